"""Rep pages over HTTP against the running demo stack: sync from chat, the visit form's photo
(real RapidOCR) and voice (real Whisper) uploads, saving, validation, and scope (a rep never
opens another rep's customer)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest

pytestmark = pytest.mark.dates  # expectations relative to today: see tests/conftest.py

FIXTURES = Path(__file__).parent.parent / "media" / "fixtures"
SIGNS = json.loads((FIXTURES / "signs.json").read_text(encoding="utf-8"))


def tomorrow() -> str:
    return (datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date()
            + timedelta(days=1)).isoformat()


async def say(web, user: str, text: str, platform: str = "wecom") -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{web.sim.url}/demo/api/say",
                             json={"platform": platform, "user": user, "text": text}) as r:
            assert r.status == 200, await r.text()


async def wait_buffered(web, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not web.sql("SELECT id FROM chat_messages WHERE text = :t", t=text):
        assert time.monotonic() < deadline, "message never reached the chat buffer"
        await asyncio.sleep(0.05)


async def post_form(client, path: str, fields: list[tuple[str, str]]):
    """A form post with repeated fields (several ticked messages)."""
    async with client.http.post(path, data=[("_csrf", client.csrf), *fields],
                                allow_redirects=False) as r:
        return r.status, r.headers.get("Location", ""), await r.text()


async def upload(client, path: str, field: str, data: bytes, filename: str, ctype: str):
    form = aiohttp.FormData()
    form.add_field(field, data, filename=filename, content_type=ctype)
    async with client.http.post(path, data=form, headers={"X-CSRF-Token": client.csrf}) as r:
        return r.status, await r.json()


def hidden(html: str, name: str) -> str:
    m = re.search(r'name="' + name + r'" value="([^"]*)"', html)
    assert m, f"no {name} field"
    return m.group(1)


async def test_sync_page_lists_chat_and_saves_visit(web):
    text = "今天拜访了华东精密，周工说下周下单"
    await say(web, "zhangsan", text)
    await say(web, "lisi", "金陵化工的冯总约了下周见面")  # another rep's chat
    await wait_buffered(web, text)
    rep = await web.client().login("zhangsan")
    page = await rep.page("/app/sync")
    assert text in page and "华东精密零部件有限公司" in page
    assert "金陵化工" not in page  # lisi's chat is not zhangsan's
    (msg_id,) = re.findall(r'name="m" value="(\d+)"', page)
    fields = [(k, hidden(page, k)) for k in ("platform", "app_id", "chat_id", "customer")]
    before = web.sql("SELECT last_activity_at FROM customers WHERE id = :i",
                     i=int(dict(fields)["customer"]))

    # a customer the ticked message does not mention is refused
    bad = [(k, v) for k, v in fields if k != "customer"] + [("customer", "5"), ("m", msg_id)]
    status, _, body = await post_form(rep, "/app/sync", bad)
    assert status == 400 and "请选择勾选的消息里提到的客户" in body

    ok = fields + [("m", msg_id), ("follow_up", "1"), ("follow_up_on", tomorrow())]
    status, loc, _ = await post_form(rep, "/app/sync", ok)
    assert status == 302 and loc == "/app/visits?saved=1"
    rows = web.sql("SELECT v.id, v.source, c.name, v.deal_id, v.evidence, v.follow_up_on "
                   "FROM visits v JOIN customers c ON c.id = v.customer_id")
    assert len(rows) == 1
    vid, source, cname, deal_id, evidence, follow = rows[0]
    assert (source, cname, str(follow)) == ("chat_sync", "华东精密零部件有限公司", tomorrow())
    assert json.loads(evidence)["messages"][0]["text"] == text
    # the rep's own most recently active open deal is linked
    assert web.sql("SELECT title FROM deals WHERE id = :i", i=deal_id) == \
        [("数控机床配件年度框架",)]
    assert web.sql("SELECT due_on, done FROM tasks") == [(tomorrow(), 0)]
    after = web.sql("SELECT last_activity_at FROM customers WHERE id = :i",
                    i=int(dict(fields)["customer"]))
    assert after != before
    assert web.sql("SELECT entity_id FROM audit_log WHERE action = 'visit.create'") == \
        [(str(vid),)]
    # the same save again is recognised, not a second visit
    status, loc, _ = await post_form(rep, "/app/sync", ok)
    assert loc == "/app/visits?saved=dup"
    assert web.sql("SELECT count(*) FROM visits") == [(1,)]
    visits = await rep.page("/app/visits")
    assert "聊天同步" in visits and "华东精密零部件有限公司" in visits
    # a chat the rep is not in cannot be saved from
    other = [("platform", "wecom"), ("app_id", dict(fields)["app_id"]), ("chat_id", "lisi"),
             ("m", msg_id), ("customer", dict(fields)["customer"])]
    status, _, body = await post_form(rep, "/app/sync", other)
    assert status == 400 and "不属于你" in body


async def test_photo_suggests_customer_and_saves(web):
    rep = await web.client().login("zhangsan")
    await rep.page("/app/visits/new")
    sign = "sign_gps_rotated.jpg"
    status, body = await upload(rep, "/app/visits/photo", "photo",
                                (FIXTURES / sign).read_bytes(), sign, "image/jpeg")
    assert status == 200, body
    assert body["candidates"][0]["name"] == SIGNS[sign]
    assert re.fullmatch(r"[0-9a-f]{64}", body["photo_ref"])
    # save it as a visit
    form = await rep.page("/app/visits/new")
    r = await rep.post("/app/visits", {
        "draft": hidden(form, "draft"), "customer_id": str(body["candidates"][0]["customer_id"]),
        "photo_ref": body["photo_ref"], "ocr_text": body["name"], "note": "门头拍照签到"},
        allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/app/visits?saved=1"
    [(source, evidence, summary)] = web.sql("SELECT source, evidence, summary FROM visits")
    assert source == "photo" and summary == "门头拍照签到"
    assert json.loads(evidence)["photo_sha256"] == body["photo_ref"]
    assert web.sql("SELECT count(*) FROM tasks") == [(0,)]  # no date, no task
    assert "已保存 ✓" in await rep.page("/app/visits?saved=1")

    # another rep's customer on a sign is not named to zhangsan
    hard = "sign_hard.jpg"
    status, mine = await upload(rep, "/app/visits/photo", "photo",
                                (FIXTURES / hard).read_bytes(), hard, "image/jpeg")
    assert status == 200 and mine["candidates"] == [] and mine["others"] >= 1

    # a sign of a company that is no customer yet: its name is offered for 新建客户
    unknown = "sign_unknown.jpg"
    status, new = await upload(rep, "/app/visits/photo", "photo",
                               (FIXTURES / unknown).read_bytes(), unknown, "image/jpeg")
    assert status == 200 and new["candidates"] == [] and new["others"] == 0
    assert new["name"] == SIGNS[unknown]
    r = await rep.post("/app/visits", {"new_customer": "1", "new_name": new["name"],
                                       "photo_ref": new["photo_ref"], "ocr_text": new["name"]},
                       allow_redirects=False)
    assert r.status == 302
    assert web.sql("SELECT u.name FROM customers c JOIN users u ON u.id = c.owner_id "
                   "WHERE c.name = :n", n=SIGNS[unknown]) == [("张三",)]
    assert web.sql("SELECT summary FROM visits WHERE source = 'photo' ORDER BY id DESC "
                   "LIMIT 1") == [(f"门头照片签到：{SIGNS[unknown]}",)]
    assert web.sql("SELECT count(*) FROM audit_log WHERE action = 'customer.create'") == [(1,)]


async def test_bad_uploads_and_form_validation(web):
    rep = await web.client().login("zhangsan")
    await rep.page("/app/visits/new")
    status, body = await upload(rep, "/app/visits/photo", "photo", b"%PDF-1.4 not a photo",
                                "x.jpg", "image/jpeg")
    assert status == 422 and "不是可识别的图片" in body["error"]
    status, body = await upload(rep, "/app/visits/voice", "audio", b"\x00" * 2000,
                                "x.ogg", "audio/ogg")
    assert 400 <= status < 500 and body["error"]
    status, body = await upload(rep, "/app/visits/photo", "nothing", b"x", "x.jpg",
                                "image/jpeg")
    assert status == 400 and body["error"]
    # a 900-megapixel bomb: refused from its header, before decoding
    bomb = _png_header(30000, 30000)
    status, body = await upload(rep, "/app/visits/photo", "photo", bomb, "b.png", "image/png")
    assert status == 422 and "过大" in body["error"]

    status, body = await upload(rep, "/app/visits/photo", "photo", b"\xff" * (21 << 20),
                                "huge.jpg", "image/jpeg")  # over the 20 MB upload cap
    assert status == 413 and "过大" in body["error"]
    form = aiohttp.FormData()
    form.add_field("photo", (FIXTURES / "sign_hard.jpg").read_bytes(), filename="s.jpg")
    async with rep.http.post("/app/visits/photo", data=form) as r:  # no CSRF token
        assert r.status == 403

    form = await rep.page("/app/visits/new")
    r = await rep.post("/app/visits", {"draft": hidden(form, "draft"), "note": "聊了聊"})
    assert r.status == 400 and "请选择客户" in await r.text()
    r = await rep.post("/app/visits", {"customer_name": "华东精密", "note": "x",
                                       "follow_up_on": "2024-13-45"})
    assert r.status == 400 and "跟进日期格式" in await r.text()
    r = await rep.post("/app/visits", {"customer_name": "不存在的公司", "note": "x"})
    assert r.status == 400 and "找不到客户" in await r.text()
    r = await rep.post("/app/visits", {"customer_id": "4", "note": "x"})  # lisi's customer
    assert r.status == 400 and "不是你的客户" in await r.text()
    assert web.sql("SELECT count(*) FROM visits") == [(0,)]

    # the typed name (short name) resolves; a follow-up date makes a task; audit row
    r = await rep.post("/app/visits", {"customer_name": "华东精密", "note": "报价有疑问",
                                       "follow_up_on": tomorrow()}, allow_redirects=False)
    assert r.status == 302
    assert web.sql("SELECT source, follow_up_on FROM visits") == [("manual", tomorrow())]
    assert web.sql("SELECT title, due_on FROM tasks") == [("跟进 华东精密零部件有限公司",
                                                           tomorrow())]
    assert web.sql("SELECT count(*) FROM audit_log WHERE action = 'visit.create'") == [(1,)]


def _png_header(w: int, h: int) -> bytes:
    """A real 8×8 PNG whose header claims ``w``×``h`` pixels (a decompression bomb)."""
    import io
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytes(data[12:16]) + struct.pack(">II", w, h) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", w, h)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr))
    return bytes(data)


async def test_customers_deals_followups_and_scope(web):
    rep = await web.client().login("zhangsan")
    page = await rep.page("/app/customers")
    assert "华东精密零部件有限公司" in page and "南京金陵化工集团" not in page
    assert "西子智能" in await rep.page("/app/customers?q=西子")
    assert "华东精密零部件" not in await rep.page("/app/customers?q=西子")
    [(own,)] = web.sql("SELECT id FROM customers WHERE name = '华东精密零部件有限公司'")
    [(lisis,)] = web.sql("SELECT id FROM customers WHERE name = '南京金陵化工集团'")
    detail = await rep.page(f"/app/customers/{own}")
    assert "周工" in detail and "数控机床配件年度框架" in detail and "INV-2024-0002" in detail
    await rep.page(f"/app/customers/{lisis}", status=403)
    await rep.page("/app/customers/99999", status=404)
    await rep.page("/app/customers/abc", status=404)
    await rep.page("/app/customers/99999999999999999999999", status=404)
    assert (await rep.post("/app/followups/99999999999999999999999/done")).status == 404
    r = await rep.post("/app/visits", {"customer_id": "9" * 30, "note": "x"})
    assert r.status == 400 and "客户不存在" in await r.text()
    r = await rep.post("/app/sync", {"m": "9" * 30, "chat_id": "x"})
    assert r.status == 400 and "消息选择无效" in await r.text()
    # the manager of 华东区 sees both reps' customers; the 华南区 manager does not
    mgr = await web.client().login("lijingli")
    await mgr.page(f"/app/customers/{lisis}")
    south = await web.client().login("chenjingli")
    await south.page(f"/app/customers/{own}", status=403)

    deals = await rep.page("/app/deals")
    assert "智能仓储试点" in deals and "防爆设备采购" not in deals
    assert re.search(r'class="stale warn".*?智能仓储试点', deals, re.S)  # 25 days idle

    # follow-ups: zhangsan's task, done once (audited); lisi cannot touch it
    await rep.post("/app/visits", {"customer_name": "西子智能", "note": "试点",
                                   "follow_up_on": tomorrow()})
    [(tid,)] = web.sql("SELECT id FROM tasks")
    assert "跟进 杭州西子智能科技有限公司" in await rep.page("/app/followups")
    lisi = await web.client().login("lisi")
    assert "西子智能" not in await lisi.page("/app/followups")
    r = await lisi.post(f"/app/followups/{tid}/done")
    assert r.status == 403
    r = await rep.post(f"/app/followups/{tid}/done", allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == "/app/followups?done=1"
    assert web.sql("SELECT done FROM tasks") == [(1,)]
    assert web.sql("SELECT count(*) FROM audit_log WHERE action = 'task.done'") == [(1,)]
    assert "西子智能" not in await rep.page("/app/followups")
    r = await rep.post(f"/app/followups/{tid}/done", csrf=False)
    assert r.status == 403


@pytest.mark.slow
async def test_voice_upload_transcribes(web, tmp_path):
    rep = await web.client().login("zhangsan")
    await rep.page("/app/visits/new")
    status, body = await upload(rep, "/app/visits/voice", "audio",
                                (FIXTURES / "visit_zh.ogg").read_bytes(), "visit_zh.ogg",
                                "audio/ogg")
    assert status == 200, body
    assert "跟进" in body["text"] and "華" not in body["text"]  # Simplified
    assert body["candidates"] and body["candidates"][0]["name"] == "华东精密零部件有限公司"
    assert body["follow_up_on"] and body["follow_up_on"] > datetime.now(UTC).date().isoformat()
    # what the browser's MediaRecorder sends: Opus in WebM (remuxed here with ffmpeg)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return
    webm = tmp_path / "note.webm"
    subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(FIXTURES / "visit_zh.ogg"), "-c",
                    "copy", str(webm)], check=True, timeout=30)  # noqa: S603
    status, body = await upload(rep, "/app/visits/voice", "audio", webm.read_bytes(),
                                "voice.webm", "audio/webm")
    assert status == 200 and "跟进" in body["text"], body
