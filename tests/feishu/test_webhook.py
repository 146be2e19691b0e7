"""End to end: fake Feishu → bot webhook → core → outbox → fake Feishu API."""

from __future__ import annotations

import asyncio
import base64
import json
import time

from simulator.feishu import encrypt
from tests.feishu.conftest import VTOKEN, wait_for

VECTOR_KEY = "test key"
VECTOR_BLOB = "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="


def _card_buttons(card):
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("tag") == "button":
                found.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(card)
    return found


async def test_official_vector_and_url_verification_through_the_endpoint(db_url, tmp_path):
    """What this proves, link by link: (1) the simulator's encryptor, given the vector's IV,
    reproduces the official blob byte for byte; (2) the endpoint's own crypto object (the one
    the route uses) decrypts the official blob to "hello world"; (3) a url_verification
    encrypted by that same encryptor under the vector's key and IV is decrypted and answered by
    the real HTTP endpoint. The official blob itself is not JSON, so it cannot be POSTed as an
    event; links 1-3 together tie the endpoint to the published vector."""
    from tests.feishu.conftest import _start

    env = await _start(db_url, tmp_path, feishu_encrypt_key=VECTOR_KEY)
    try:
        iv = base64.b64decode(VECTOR_BLOB)[:16]
        assert encrypt(VECTOR_KEY, "hello world", iv=iv) == VECTOR_BLOB
        assert env.adapter.webhook.crypto.decrypt(VECTOR_BLOB) == "hello world"
        payload = json.dumps({"challenge": "ch-123", "token": VTOKEN,
                              "type": "url_verification"})
        body = json.dumps({"encrypt": encrypt(VECTOR_KEY, payload, iv=iv)}).encode()
        r = await env.sim.post(env.url, body, {"Content-Type": "application/json"})
        assert (r.status, r.data) == (200, {"challenge": "ch-123"})
        # the official blob as a body: decrypts to "hello world", which is not JSON → 400
        r = await env.sim.post(env.url, json.dumps({"encrypt": VECTOR_BLOB}).encode(), {})
        assert r.status == 400
        assert await env.inbox_rows() == 0
    finally:
        await env.bot.close()
        await env.api.close()


async def test_url_verification(feishu):
    r = await feishu.sim.url_verification(feishu.url, challenge="abc")
    assert (r.status, r.data) == (200, {"challenge": "abc"})
    r = await feishu.sim.url_verification(feishu.url, challenge="abc", encrypted=False)
    assert (r.status, r.data) == (200, {"challenge": "abc"})
    r = await feishu.sim.url_verification(feishu.url, challenge="abc", token="wrong")
    assert r.status == 401 and "abc" not in json.dumps(r.data)
    assert await feishu.inbox_rows() == 0
    assert feishu.recorder.calls == []  # never reached the core, nothing sent


async def test_text_is_answered_through_the_api(feishu):
    r = await feishu.sim.send_text(feishu.url, "ou_alice", "你好")
    assert (r.status, r.data) == (200, {"msg": "success"})
    [call] = await wait_for(lambda: feishu.sends("ou_alice"))
    assert call.body["msg_type"] == "text"
    assert json.loads(call.body["content"])["text"].startswith("收到文字：你好")
    assert call.body["uuid"] and len(call.body["uuid"]) <= 50
    assert feishu.recorder.calls[0].api == "token"


async def test_group_mention_answers_in_the_group(feishu):
    mentions = [{"key": "@_user_1", "id": {"open_id": "ou_bot"}, "name": "FieldBot"}]
    r = await feishu.sim.send_text(feishu.url, "ou_bob", "@_user_1 早上好", chat_id="oc_grp",
                                   chat_type="group", mentions=mentions)
    assert r.status == 200
    [call] = await wait_for(lambda: feishu.sends("oc_grp"))
    assert "receive_id_type=chat_id" in str(call.path) or call.dest == "oc_grp"
    assert json.loads(call.body["content"])["text"].startswith("收到文字：早上好")


async def test_retry_gets_one_answer(feishu):
    for _ in range(3):  # Feishu re-pushes the same event_id with a new timestamp/nonce
        r = await feishu.sim.send_text(feishu.url, "ou_r", "again", event_id="ev-retry-1")
        assert r.status == 200
    await wait_for(lambda: feishu.sends("ou_r"))
    await asyncio.sleep(0.3)
    assert len(feishu.sends("ou_r")) == 1
    assert await feishu.inbox_rows() == 1


async def test_same_event_50x_concurrently(feishu):
    payload = feishu.sim.message_payload("ou_storm", "text", {"text": "storm"},
                                         event_id="ev-storm")
    requests = [feishu.sim.build_request(payload) for _ in range(50)]
    replies = await asyncio.gather(*(feishu.sim.post(feishu.url, b, h) for b, h in requests))
    assert {r.status for r in replies} == {200}
    await wait_for(lambda: feishu.sends("ou_storm"))
    await asyncio.sleep(0.3)
    assert len(feishu.sends("ou_storm")) == 1
    assert await feishu.inbox_rows() == 1


async def test_forged_and_stale_are_refused_and_store_nothing(feishu):
    sim = feishu.sim
    payload = sim.message_payload("ou_x", "text", {"text": "hi"})
    r = await sim.post(feishu.url, *sim.build_request(payload, forge=True))
    assert r.status == 401
    r = await sim.post(feishu.url, *sim.build_request(payload,
                                                      timestamp=int(time.time()) - 3600))
    assert r.status == 401
    r = await sim.post(feishu.url, *sim.build_request(payload, signed=False))
    assert r.status == 401  # only the URL check may arrive unsigned
    body, headers = sim.build_request(payload)
    r = await sim.post(feishu.url, body[:-1] + b" }", headers)  # tampered after signing
    assert r.status == 401
    wrong_token = sim.message_payload("ou_x", "text", {"text": "hi"})
    wrong_token["header"]["token"] = "nope"
    r = await sim.post(feishu.url, *sim.build_request(wrong_token))
    assert r.status == 401
    await asyncio.sleep(0.2)
    assert await feishu.inbox_rows() == 0
    assert feishu.sends() == []


async def test_malformed_input(feishu_sqlite):
    env, sim = feishu_sqlite, feishu_sqlite.sim
    r = await sim.post(env.url, *sim.build_request(None, raw_body=b"{not json"))
    assert r.status == 400
    r = await sim.post(env.url, *sim.build_request(None, raw_body=b'{"encrypt": "%%%not-b64"}'))
    assert r.status == 400
    r = await sim.post(env.url, *sim.build_request(None, raw_body=b'{"encrypt": "QUJDRA=="}'))
    assert r.status == 400  # valid base64, not a whole AES block
    r = await sim.post(env.url, *sim.build_request({"schema": "2.0", "header": {}}))
    assert r.status == 400
    big = sim.message_payload("ou_x", "text", {"text": "x" * 70_000})
    r = await sim.post(env.url, *sim.build_request(big))
    assert r.status == 413
    unknown = {"schema": "2.0", "header": sim._header("contact.user.created_v3", None),
               "event": {}}
    r = await sim.post(env.url, *sim.build_request(unknown))
    assert (r.status, r.data) == (200, {})
    assert await env.inbox_rows() == 0


async def test_help_card_tap_toast_and_update(feishu):
    sim = feishu.sim
    await sim.send_text(feishu.url, "ou_h", "help")
    [call] = await wait_for(lambda: feishu.sends("ou_h"))
    assert call.body["msg_type"] == "interactive"
    card = json.loads(call.body["content"])
    assert card["schema"] == "2.0"
    [button] = _card_buttons(card)
    value = button["behaviors"][0]["value"]
    message_id = call.result["message_id"]

    started = time.monotonic()
    r = await sim.tap_card(feishu.url, "ou_h", value, message_id, card_token="c-tok-1")
    assert time.monotonic() - started < 3.0
    assert r.status == 200
    assert r.data == {"toast": {"type": "success", "content": "👍"}}
    [upd] = await wait_for(lambda: feishu.recorder.of("feishu", "update_card"))
    assert upd.body["token"] == "c-tok-1"
    assert sim.messages[message_id].updates and "已读" in json.dumps(
        sim.messages[message_id].content, ensure_ascii=False)
    assert _card_buttons(sim.messages[message_id].content) == []
    assert len(feishu.sends("ou_h")) == 1  # the update is not a new message
    # the delayed update waited for the tap's answer (Feishu reverts one sent before it)
    assert feishu.recorder.of("feishu", "update_before_answer") == []


async def test_card_update_waits_for_the_taps_answer(feishu):
    """The adapter holds a delayed-token update until its tap's answer is written (this
    process saw the tap) or until 0.5 s after the tap (a worker process delivers it)."""
    import asyncio

    from bot.event import OutMessage, Target
    from cards import Card

    sim, adapter = feishu.sim, feishu.adapter
    await sim.send_text(feishu.url, "ou_w", "help")
    [call] = await wait_for(lambda: feishu.sends("ou_w"))
    mid = call.result["message_id"]
    target = Target(platform="feishu", app_id=adapter.app_id, kind="user", id="ou_w")
    done = Card(title="T", status="已读").model_dump()
    sim.issue_card_token("c-wait-1", mid)
    adapter.answers.expect("c-wait-1")  # a tap whose answer is still being written
    task = asyncio.create_task(adapter.deliver(target, OutMessage(
        kind="update_card", card=done, card_ref={"token": "c-wait-1", "open_message_id": mid}),
        "k-wait-1"))
    await asyncio.sleep(0.3)
    assert not task.done() and feishu.recorder.of("feishu", "update_card") == []
    adapter.answers.answered("c-wait-1")
    assert (await asyncio.wait_for(task, 2)) == {"updated": "token"}
    # a token this process never saw: not before tap_at + 0.5 s
    sim.issue_card_token("c-wait-2", mid)
    started = time.monotonic()
    await adapter.deliver(target, OutMessage(kind="update_card", card=done, card_ref={
        "token": "c-wait-2", "open_message_id": mid, "tap_at": time.time()}), "k-wait-2")
    assert time.monotonic() - started >= 0.45


async def test_forged_tap_gets_error_toast_and_no_update(feishu):
    sim = feishu.sim
    await sim.send_text(feishu.url, "ou_f", "help")
    [call] = await wait_for(lambda: feishu.sends("ou_f"))
    value = _card_buttons(json.loads(call.body["content"]))[0]["behaviors"][0]["value"]
    body, mac = value["t"].split(".")
    forged = {"t": body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac}
    r = await sim.tap_card(feishu.url, "ou_f", forged, call.result["message_id"])
    assert r.status == 200 and r.data["toast"]["type"] == "error"
    await asyncio.sleep(0.4)
    assert feishu.recorder.of("feishu", "update_card") == []
    assert feishu.recorder.of("feishu", "patch") == []


async def test_rate_limited_send_is_retried_and_delivered(feishu):
    feishu.sim.faults.rate_limited = 1
    await feishu.sim.send_text(feishu.url, "ou_rl", "hello")
    [call] = await wait_for(lambda: feishu.sends("ou_rl"), timeout=8)
    rejected = feishu.recorder.of("feishu", "rejected")
    assert len(rejected) == 1 and rejected[0].result["code"] == 99991400
    assert rejected[0].body["uuid"] == call.body["uuid"]  # the same outbox row, retried


async def test_burst_to_one_user_is_paced_and_all_delivered(feishu):
    texts = [f"m{i}" for i in range(8)]
    for t in texts:
        assert (await feishu.sim.send_text(feishu.url, "ou_burst", t)).status == 200
    await wait_for(lambda: len(feishu.sends("ou_burst")) == 8, timeout=10)
    got = sorted(json.loads(c.body["content"])["text"].split("\n")[0]
                 for c in feishu.sends("ou_burst"))
    assert got == sorted(f"收到文字：{t}" for t in texts)
    stamps = sorted(c.at for c in feishu.sends("ou_burst"))
    assert all(stamps[i + 5] - stamps[i] >= 0.9 for i in range(len(stamps) - 5))


async def test_token_invalid_is_refreshed_once(feishu):
    await feishu.sim.send_text(feishu.url, "ou_t1", "first")
    await wait_for(lambda: feishu.sends("ou_t1"))
    assert len(feishu.recorder.of("feishu", "token")) == 1
    feishu.sim.faults.token_invalid = 1
    await feishu.sim.send_text(feishu.url, "ou_t2", "second")
    [call] = await wait_for(lambda: feishu.sends("ou_t2"))
    assert len(feishu.recorder.of("feishu", "token")) == 2
    assert [c.result["code"] for c in feishu.recorder.of("feishu", "rejected")] == [99991663]


async def test_voice_and_image_download(feishu):
    sim = feishu.sim
    await sim.send_audio(feishu.url, "ou_v", "file_v1", 4200, data=b"OggS" + b"\0" * 100)
    [call] = await wait_for(lambda: feishu.sends("ou_v"))
    assert json.loads(call.body["content"])["text"].startswith("收到语音 4 秒")
    await sim.send_image(feishu.url, "ou_v", "img_v1", data=b"\x89PNG" + b"\1" * 5000)
    await wait_for(lambda: len(feishu.sends("ou_v")) == 2)
    from bot.event import MediaRef
    from bot.platform import MediaError

    mid = next(k for k, v in sim.media.items() if v.startswith(b"\x89PNG"))[0]
    ref = MediaRef(kind="image", key="img_v1", message_id=mid)
    assert (await feishu.adapter.download_media(ref, 10_000)).startswith(b"\x89PNG")
    try:
        await feishu.adapter.download_media(ref, 1000)
        raise AssertionError("byte cap not enforced")
    except MediaError:
        pass
    assert [c.body["type"] for c in feishu.recorder.of("feishu", "media")] == ["image"] * 2


async def test_inbox_down_answers_503_so_feishu_retries(feishu_sqlite):
    from bot.app import INBOX

    env = feishu_sqlite
    env.app[INBOX].stop()
    r = await env.sim.send_text(env.url, "ou_503", "hi", event_id="ev-503")
    assert r.status == 503
    env.app[INBOX].start()
    r = await env.sim.send_text(env.url, "ou_503", "hi", event_id="ev-503")
    assert r.status == 200
    await wait_for(lambda: env.sends("ou_503"))
