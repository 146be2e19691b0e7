"""Pure Feishu crypto and parsing: official vector, SDK cross-checks, payload shapes."""

from __future__ import annotations

import base64
import json

import lark_oapi as lark
import pytest
from lark_oapi.core.model import RawRequest

from integrations.feishu import parse
from integrations.feishu.crypto import CryptoError, FeishuCrypto, SignatureError, signature
from simulator.core import Recorder
from simulator.feishu import FeishuSim, encrypt

VECTOR_KEY = "test key"
VECTOR_BLOB = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="


def test_official_hello_world_vector():
    assert FeishuCrypto(VECTOR_KEY, "v").decrypt(VECTOR_BLOB) == "hello world"


def test_simulator_encryption_reproduces_the_official_vector():
    iv = base64.b64decode(VECTOR_BLOB)[:16]
    assert iv.hex() == "3f7ef0f9564898d80f10ed5106127a46"
    assert encrypt(VECTOR_KEY, "hello world", iv=iv) == VECTOR_BLOB


@pytest.mark.parametrize("blob", ["not base64!!", "", "QUJD", base64.b64encode(b"x" * 33).decode(),
                                  12, None])
def test_bad_ciphertext_is_a_crypto_error(blob):
    with pytest.raises(CryptoError):
        FeishuCrypto(VECTOR_KEY, "v").decrypt(blob)


def test_wrong_key_is_a_crypto_error():
    blob = encrypt("right key", json.dumps({"a": 1}))
    with pytest.raises(CryptoError):
        FeishuCrypto("wrong key", "v").decrypt(blob)


def test_signature_matches_lark_sdk_check():
    """Our signature is accepted by lark-oapi's own verifier (and a forged one is not)."""
    sim = FeishuSim(Recorder(), "cli_a", "s", "vtok", "ekey")
    body, headers = sim.build_request({"hello": "world"})
    handler = lark.EventDispatcherHandler.builder("ekey", "vtok").build()
    req = RawRequest()
    req.headers, req.body = headers, body
    handler._verify_sign(req, "ekey")  # raises on mismatch
    FeishuCrypto("ekey", "vtok").verify_signature(
        headers["X-Lark-Request-Timestamp"], headers["X-Lark-Request-Nonce"],
        headers["X-Lark-Signature"], body)
    assert signature("1", "n", "k", b"b") != signature("1", "n", "k", b"c")
    with pytest.raises(SignatureError):
        FeishuCrypto("ekey", "vtok").verify_signature(
            headers["X-Lark-Request-Timestamp"], headers["X-Lark-Request-Nonce"],
            headers["X-Lark-Signature"], body + b" ")
    with pytest.raises(SignatureError):
        FeishuCrypto("ekey", "vtok").verify_signature("", "", "", body)


def test_timestamp_window_and_token():
    c = FeishuCrypto("k", "vtok")
    c.check_timestamp("1000", 300, now=1200)
    with pytest.raises(SignatureError):
        c.check_timestamp("1000", 300, now=1301)
    with pytest.raises(SignatureError):
        c.check_timestamp("abc", 300, now=1000)
    c.check_timestamp("1", 0, now=10**9)  # window 0 = off
    c.verify_token("vtok")
    for bad in ("vtoK", "", None, 5):
        with pytest.raises(SignatureError):
            c.verify_token(bad)


def _sim():
    return FeishuSim(Recorder(), "cli_a", "s", "vtok", "ekey")


def test_text_message_with_mention_in_group():
    sim = _sim()
    mentions = [{"key": "@_user_1", "id": {"open_id": "ou_bot"}, "name": "FieldBot"}]
    data = sim.message_payload("ou_1", "text", {"text": "@_user_1 help"}, chat_id="oc_g",
                               chat_type="group", event_id="ev1", mentions=mentions)
    ev = parse.to_event(data, "cli_a")
    assert (ev.text, ev.msg_type, ev.sender, ev.event_id) == ("help", "text", "ou_1", "ev1")
    assert ev.chat.type == "group" and ev.chat.id == "oc_g"
    assert ev.reply_target().kind == "chat" and ev.reply_target().id == "oc_g"
    assert "token" not in ev.raw["header"]  # the verification token is not stored


def test_media_messages():
    sim = _sim()
    ev = parse.to_event(sim.message_payload("ou_1", "audio", {"file_key": "fk", "duration": 3200},
                                            message_id="om_1"), "cli_a")
    assert ev.msg_type == "voice" and ev.media.key == "fk" and ev.media.duration_ms == 3200
    assert ev.media.message_id == "om_1" and ev.reply_target().kind == "user"
    ev = parse.to_event(sim.message_payload("ou_1", "image", {"image_key": "img_1"},
                                            message_id="om_2"), "cli_a")
    assert ev.msg_type == "image" and ev.media.kind == "image" and ev.media.key == "img_1"
    post = {"title": "T", "content": [[{"tag": "text", "text": "a "}, {"tag": "at",
                                                                        "user_id": "@_user_1"},
                                       {"tag": "text", "text": "b"}],
                                      [{"tag": "img", "image_key": "img_2"}]]}
    ev = parse.to_event(sim.message_payload("ou_1", "post", post), "cli_a")
    assert ev.msg_type == "rich_text" and ev.text == "T\na b" and ev.media.key == "img_2"
    ev = parse.to_event(sim.message_payload("ou_1", "file", {"file_key": "f", "file_name": "x"}),
                        "cli_a")
    assert ev.msg_type == "file" and ev.media.extra["file_name"] == "x"
    ev = parse.to_event(sim.message_payload("ou_1", "merge_forward", {}), "cli_a")
    assert ev.msg_type == "merge_forward"


def test_infinite_duration_is_unknown_not_an_overflow():
    """``{"duration": Infinity}`` in a message's content: ``int(inf)`` raised OverflowError (not
    a ValueError: the webhook answered 500). Found by tests/reliability/test_fuzz_http.py."""
    sim = _sim()
    payload = sim.message_payload("ou_1", "audio", {"file_key": "fk"}, message_id="om_9")
    payload["event"]["message"]["content"] = '{"file_key": "fk", "duration": Infinity}'
    ev = parse.to_event(payload, "cli_a")
    assert ev.msg_type == "voice" and ev.media.key == "fk" and ev.media.duration_ms is None


def test_card_action_shapes():
    sim = _sim()
    data = sim.tap_payload("ou_1", "tok.en", "om_9", "c-123", form_value={"note": "x"},
                           chat_id="oc_c", event_id="ev2")
    ev = parse.to_event(data, "cli_a")
    assert ev.kind == "card_action" and ev.sender == "ou_1" and ev.event_id == "ev2"
    assert ev.action.value == "tok.en" and ev.action.form == {"note": "x"}
    assert ev.action.card_ref == {"token": "c-123", "open_message_id": "om_9"}
    assert ev.reply_target().extra == {"chat_id": "oc_c"}
    data["event"]["action"]["value"] = "bare"
    assert parse.to_event(data, "cli_a").action.value == "bare"
    data["event"]["action"]["value"] = {"other": 1}
    assert parse.to_event(data, "cli_a").action.value == ""


def test_envelopes():
    assert parse.envelope({"type": "url_verification", "challenge": "c", "token": "t"}
                          ).challenge == "c"
    env = parse.envelope({"uuid": "u1", "token": "t", "event": {"type": "message"}})
    assert (env.version, env.event_id, env.type) == ("v1", "u1", "message")
    assert parse.to_event({"schema": "2.0", "header": {"event_id": "e", "event_type": "x.y"},
                           "event": {}}, "a") is None
    for bad in ([], {"schema": "2.0", "header": {}}, {"type": "url_verification"}):
        with pytest.raises(parse.ParseError):
            parse.envelope(bad)
