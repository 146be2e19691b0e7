"""Signed action tokens: what we sign comes back intact; anything else is ForgedAction."""

from __future__ import annotations

import base64
import json

import pytest

from cards import Action, ForgedAction, pack_action, unpack_action
from cards.payload import MAX_TOKEN_BYTES

SECRET = b"deployment-secret-1"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_round_trip():
    token = pack_action(SECRET, "approval.approve", request_id=42, step=2, note="同意 ✓")
    assert isinstance(token, str) and token.isascii() and token.count(".") == 1
    assert unpack_action(SECRET, token) == Action(
        name="approval.approve", args={"request_id": 42, "step": 2, "note": "同意 ✓"})
    assert unpack_action(SECRET, pack_action(SECRET, "help.ack")) == Action(name="help.ack")


def test_deterministic_and_arg_order_free():
    assert pack_action(SECRET, "x", a=1, b=2) == pack_action(SECRET, "x", b=2, a=1)


def test_edited_body_is_forged():
    token = pack_action(SECRET, "approval.approve", request_id=42)
    _, mac = token.split(".")
    body = json.dumps({"a": {"request_id": 43}, "n": "approval.approve"},
                      separators=(",", ":")).encode()
    with pytest.raises(ForgedAction):
        unpack_action(SECRET, f"{b64(body)}.{mac}")


def test_edited_mac_is_forged():
    token = pack_action(SECRET, "help.ack")
    body, mac = token.split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    with pytest.raises(ForgedAction):
        unpack_action(SECRET, f"{body}.{flipped}")
    with pytest.raises(ForgedAction):
        unpack_action(SECRET, f"{body}.")
    with pytest.raises(ForgedAction):
        unpack_action(SECRET, body)


def test_other_secret_is_forged():
    token = pack_action(b"another-deployment", "help.ack")
    with pytest.raises(ForgedAction):
        unpack_action(SECRET, token)


@pytest.mark.parametrize("garbage", [
    "", ".", "..", "garbage", "a.b.c", "!!!.???", "é.é", "\x00.\x00", "a" * 5000,
    b64(b"not json") + "." + b64(b"0" * 16),
    None, 123, b"bytes.token",
])
def test_garbage_is_forged(garbage):
    with pytest.raises(ForgedAction):
        unpack_action(SECRET, garbage)


def test_validly_signed_but_wrong_shape_is_forged():
    """Even with our own MAC, a body that is not an action is refused, never a crash."""
    from cards.payload import _mac

    for body in (b"[1,2]", b'{"a":{}}', b'"x"', b"\xff\xfe"):
        token = f"{b64(body)}.{b64(_mac(SECRET, body))}"
        with pytest.raises(ForgedAction):
            unpack_action(SECRET, token)


def test_forged_action_is_a_value_error():
    assert issubclass(ForgedAction, ValueError)


def test_size_cap():
    token = pack_action(SECRET, "visit.save", note="x" * 600)
    assert len(token) <= MAX_TOKEN_BYTES
    with pytest.raises(ValueError, match="too large"):
        pack_action(SECRET, "visit.save", note="x" * 1000)
    # a token over the cap is refused before any decoding
    with pytest.raises(ForgedAction):
        unpack_action(SECRET, "a" * (MAX_TOKEN_BYTES + 1))
    # WeCom button keys are at most 1024 bytes
    assert MAX_TOKEN_BYTES <= 1024
