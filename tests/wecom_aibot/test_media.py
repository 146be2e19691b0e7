"""Photo → check-in over the AI bot: the image arrives as a URL + per-message aeskey, is
downloaded and decrypted (AES-256-CBC, 32-byte PKCS#7) by the adapter, read by the real
RapidOCR, and the visit's evidence is the sha256 of the *decrypted* bytes."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from sqlalchemy import text

from bot.app import ENGINE
from bot.event import MediaRef
from bot.platform import MediaError
from integrations.wecom_aibot import media
from jobs.worker import JOB_WORKER
from tests.media.conftest import fixture_bytes, rapid  # noqa: F401 - the session OCR engine
from tests.wecom_aibot.conftest import wait_for


def _checkin(sim, user):
    for c in sim.shown(user):
        tpl = c.body.get("template_card") or {}
        if "签到" in json.dumps(tpl, ensure_ascii=False):
            return c, tpl
    return None


async def test_photo_to_checkin_visit(aibot, rapid):  # noqa: F811
    aibot.app[JOB_WORKER].services._ocr = rapid
    data = fixture_bytes("sign_gps_rotated.jpg")
    await aibot.sim.push_image("zhangsan", data)
    call, tpl = await wait_for(lambda: _checkin(aibot.sim, "zhangsan"), timeout=60)
    assert "在 华东精密零部件有限公司 签到？" in json.dumps(tpl, ensure_ascii=False)
    assert call.api == "aibot_send_msg"  # the job answers long after the req_id's window
    save = tpl["button_list"][0]
    tap = await aibot.sim.push_tap("zhangsan", save["key"], tpl["task_id"])
    await wait_for(lambda: [c for c in aibot.sim.ok("aibot_respond_update_msg")
                            if c.result["req_id"] == tap])
    async with aibot.app[ENGINE].connect() as conn:
        row = (await conn.execute(text("SELECT v.source, v.evidence FROM visits v"))).one()
    evidence = json.loads(row[1]) if isinstance(row[1], str) else row[1]
    assert row[0] == "photo"
    assert evidence["photo_sha256"] == hashlib.sha256(data).hexdigest()


async def test_download_is_capped_and_refuses_a_wrong_key(aibot):
    data = os.urandom(5000)
    ref = aibot.sim.add_media(data)
    good = MediaRef(kind="image", key=ref["url"], extra={"aeskey": ref["aeskey"]})
    assert await aibot.adapter.download_media(good, 10_000) == data
    with pytest.raises(MediaError, match="too large"):
        await aibot.adapter.download_media(good, 4000)
    wrong = good.model_copy(update={"extra": {"aeskey": media.base64.b64encode(
        os.urandom(32)).decode()}})
    with pytest.raises(MediaError):
        await aibot.adapter.download_media(wrong, 10_000)


def test_decrypt_matches_the_sdk_rule():
    """IV = the key's first 16 bytes, padding to 32-byte blocks (a 16-byte PKCS#7 unpad
    would fail on these), the aeskey base64 with or without its '='."""
    key = media.base64.b64encode(bytes(range(32))).decode()
    for n in (0, 1, 16, 31, 32, 33, 1000):
        plain = os.urandom(n)
        enc = media.encrypt(plain, key)
        assert len(enc) % 32 == 0 and len(enc) > n
        assert media.decrypt(enc, key.rstrip("=")) == plain
    with pytest.raises(MediaError):
        media.decrypt(b"\0" * 15, key)
