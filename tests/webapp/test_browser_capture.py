"""The offline-first capture page in a real (headless Chromium) phone: signed in once, the
network goes away, three visits are filed (a note, a photo downscaled on the device, a voice
note recorded from the fake microphone), the page is reloaded while still offline (the service
worker opens it, the IndexedDB queue is still there), the network returns and the queue syncs
by itself: exactly three visits on the server, their media queued for OCR / transcription,
each with its check-in distance. The first upload's answer is lost after the server filed it
(the connection dropped, as when the server dies mid-sync): the retry files no duplicate.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.webapp.conftest import person, shot
from tests.webapp.test_browser_voice import WEBM_MAGIC, clip_wav, mic_browser  # noqa: F401

FIXTURES = Path(__file__).parent.parent / "media" / "fixtures"
SIGN = FIXTURES / "sign_gps_rotated.jpg"
SIGN_NAME = json.loads((FIXTURES / "signs.json").read_text(encoding="utf-8"))[SIGN.name]
CUSTOMER = "华东精密零部件有限公司"  # zhangsan's
RENAMED = "华东精密制造股份有限公司"
HERE = {"latitude": 31.2304, "longitude": 121.4737, "accuracy": 15}
CUSTOMER_AT = (31.2304 + 80 / 111_195.0, 121.4737)  # 80 m north of where the phone is


async def until(page, expr: str, timeout: float = 20.0) -> None:
    """Poll ``expr`` in the page (the page's CSP forbids the eval ``wait_for_function``
    needs; ``evaluate`` goes through the debugger protocol)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await page.evaluate(expr):
        assert loop.time() < end, f"timed out waiting for {expr}"
        await asyncio.sleep(0.1)


def big_photo(tmp_path: Path) -> Path:
    """The sign at phone-camera size (4000 px wide): the page must bring it to ≤ 1600 px."""
    from PIL import Image

    out = tmp_path / "camera.jpg"
    with Image.open(SIGN) as im:
        im.convert("RGB").resize((4000, 3000)).save(out, quality=90)
    return out


async def capture_page(browser, base: str):
    ctx = await browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN",
                                    is_mobile=True, has_touch=True,
                                    permissions=["microphone", "geolocation"],
                                    geolocation=HERE)
    page = await ctx.new_page()
    await page.goto(base + "/app/login")
    await page.click(f'button[data-user="{person("zhangsan").name}"]')
    await page.wait_for_url(base + "/app/")
    await page.goto(base + "/app/capture")
    await page.wait_for_selector("#capture[data-offline=ready][data-customers]")
    await until(page, "document.getElementById('c-pos').textContent.includes('±')")
    return ctx, page


async def compose(page, note: str) -> None:
    await page.fill("#c-customer", CUSTOMER)
    await page.fill("#c-text", note)
    before = int(await page.get_attribute("#capture", "data-waiting") or 0)
    await page.click("#c-save")
    await until(page, f"Number(document.getElementById('capture').dataset.waiting) === "
                      f"{before + 1}")


@pytest.mark.slow
async def test_capture_offline_then_sync_once(web, mic_browser, clip_wav, tmp_path):  # noqa: F811
    [(cid,)] = web.sql("SELECT id FROM customers WHERE name = :n", n=CUSTOMER)
    await web.write(lambda conn: conn.exec_driver_sql(
        "UPDATE customers SET lat=?, lng=?, coord_system='wgs84' WHERE id=?",
        (*CUSTOMER_AT, cid)))
    ctx, page = await capture_page(mic_browser, web.bot_url)
    await ctx.set_offline(True)
    assert "离线" in await page.inner_text("#net")

    await compose(page, "离线记录一：聊了交期")
    await page.set_input_files("#c-photo", str(big_photo(tmp_path)))
    await page.get_by_text("照片 ✓").wait_for()
    await compose(page, "离线记录二：门头照片")
    await page.click("#c-record")
    await page.locator("#c-voice-status").get_by_text("录音中").wait_for(timeout=10_000)
    await asyncio.sleep(clip_wav[1] + 0.5)  # the whole clip plays into the microphone
    await page.click("#c-record")
    await page.locator("#c-voice-status").get_by_text("录音 ✓").wait_for(timeout=10_000)
    await compose(page, "")
    assert "3 条待上传 / 3 waiting" in await page.inner_text("#queue-count")
    assert web.sql("SELECT count(*) FROM visits") == [(0,)]

    # renamed in the office while the rep is offline: the phone cannot know yet …
    await web.write(lambda conn: conn.exec_driver_sql(
        "UPDATE customers SET name=? WHERE id=?", (RENAMED, cid)))
    await page.reload()  # still offline: the service worker answers, the queue is kept
    await page.wait_for_selector("#queue li")
    assert "3 条待上传" in await page.inner_text("#queue-count")
    assert "离线" in await page.inner_text("#net")
    states = await page.eval_on_selector_all("#queue li", "els => els.map(e => e.dataset.state)")
    assert states == ["waiting"] * 3
    # … and the worker really is offline: it answers the customers from its cache
    names = await page.evaluate("fetch('/app/api/capture/customers').then(r => r.json())"
                                ".then(d => d.customers.map(c => c.name))")
    assert CUSTOMER in names and RENAMED not in names
    await shot(page, "capture-offline-queue")

    posts: list[str] = []

    async def drop_first_answer(route):
        posts.append(route.request.method)
        if len(posts) == 1:  # the server files it, the phone never hears back
            await route.fetch()
            await route.abort("connectionreset")
            return
        await route.continue_()

    await page.route("**/app/api/capture", drop_first_answer)
    await ctx.set_offline(False)  # the "online" event starts the sync
    await until(page, "[...document.querySelectorAll('#queue li')].every(li => li.dataset"
                      ".state === 'done') && document.querySelectorAll('#queue li').length === 3",
                timeout=60)
    assert "0 条待上传" in await page.inner_text("#queue-count")
    assert len(posts) >= 4, posts  # three items and the retry of the dropped one
    answers = await page.evaluate("""new Promise(ok => indexedDB.open('fieldbot-capture')
      .onsuccess = e => e.target.result.transaction('queue').objectStore('queue').getAll()
      .onsuccess = r => ok(r.target.result.map(i => i.result.status)))""")
    assert sorted(answers) == ["duplicate", "filed", "filed"]  # the dropped one was filed
    await shot(page, "capture-synced")

    visits = web.sql("SELECT source, summary, evidence, lat, lng, accuracy_m, coord_system, "
                     "client_key FROM visits ORDER BY id")
    assert len(visits) == 3, visits
    assert len({v[7] for v in visits}) == 3
    assert sorted(v[0] for v in visits) == ["manual", "photo", "voice"]
    for _, _, _, lat, lng, acc, system, _ in visits:
        assert (round(lat, 4), round(lng, 4), acc, system) == (31.2304, 121.4737, 15, "wgs84")
    ev = {v[0]: json.loads(v[2]) for v in visits}
    jobs = dict(web.sql("SELECT name, args FROM jobs WHERE idem_key LIKE 'capture:%'"))
    assert set(jobs) == {"web.photo", "web.voice"}
    assert json.loads(jobs["web.photo"])["ref"] == ev["photo"]["photo_sha256"]
    audio_ref = json.loads(jobs["web.voice"])["ref"]
    assert audio_ref == ev["voice"]["audio_sha256"]
    [stored] = [p for p in tmp_path.rglob(f"{audio_ref}*") if p.is_file()]
    assert stored.read_bytes().startswith(WEBM_MAGIC)  # the page's own MediaRecorder output
    [photo] = [p for p in tmp_path.rglob(f"{ev['photo']['photo_sha256']}*") if p.is_file()]
    from PIL import Image

    with Image.open(photo) as im:
        assert max(im.size) <= 1600  # downscaled on the device
    labels = await page.eval_on_selector_all("#queue li .checkin", "els => els.map(e => "
                                                                   "e.textContent)")
    assert labels == ["距客户 80 m / 80 m from the customer"] * 3, labels
    notices = await page.eval_on_selector_all("#queue li .notice", "els => els.map(e => "
                                                                    "e.textContent)")
    assert len(notices) == 3 and all(RENAMED in n and "改名" in n for n in notices), notices
    assert web.sql("SELECT DISTINCT customer_id FROM visits") == [(cid,)]
    assert web.sql("SELECT count(*) FROM audit_log WHERE action = 'visit.create'") == [(3,)]

    # the worker reads the sign and transcribes the note (the first run loads the models)
    loop = asyncio.get_running_loop()
    end = loop.time() + 240
    while web.sql("SELECT count(*) FROM jobs WHERE idem_key LIKE 'capture:%' AND status = "
                  "'pending'") != [(0,)]:
        assert loop.time() < end, web.sql("SELECT name, status, last_error FROM jobs")
        await asyncio.sleep(0.5)
    done = {name: json.loads(r) for name, status, r in web.sql(
        "SELECT name, status, result FROM jobs WHERE idem_key LIKE 'capture:%'")
        if status == "done"}
    assert set(done) == {"web.photo", "web.voice"}, done
    assert done["web.photo"]["status"] == 200 and done["web.photo"]["text"], done
    assert done["web.photo"]["name"] == SIGN_NAME  # the sign still shows the old name …
    assert cid in [c["customer_id"] for c in done["web.photo"]["candidates"]]  # … it matches
    assert done["web.voice"]["status"] == 200 and "拜访" in done["web.voice"]["text"], done
    # … and what was read is on the visits themselves: the transcript replaced the placeholder
    visits = {src: (summary, json.loads(ev)) for src, summary, ev in web.sql(
        "SELECT source, summary, evidence FROM visits")}
    voiced = [(s, e) for s, e in visits.values() if "transcript" in e]
    assert voiced and "拜访" in voiced[0][0] and "转写中" not in voiced[0][0], visits
    assert any(e.get("ocr_name") == SIGN_NAME for _s, e in visits.values()), visits
    assert not any("ocr_other_customer" in e for _s, e in visits.values()), visits

    await page.click("#sync")  # a manual sync afterwards sends nothing again
    await asyncio.sleep(0.5)
    assert web.sql("SELECT count(*) FROM visits") == [(3,)]
    await ctx.close()


async def test_expired_session_keeps_the_queue(web, browser):
    ctx, page = await capture_page(browser, web.bot_url)
    await ctx.set_offline(True)
    await compose(page, "会话过期前写的记录")
    await web.write(lambda conn: conn.exec_driver_sql(
        "UPDATE web_sessions SET revoked_at = expires_at"))
    await ctx.set_offline(False)
    await page.locator("#signin-again").wait_for(state="visible", timeout=20_000)
    assert "重新登录" in await page.inner_text("#signin-again")
    states = await page.eval_on_selector_all("#queue li", "els => els.map(e => e.dataset.state)")
    assert states == ["waiting"] and "1 条待上传" in await page.inner_text("#queue-count")
    assert web.sql("SELECT count(*) FROM visits") == [(0,)]
    await shot(page, "capture-sign-in-again")
    await ctx.close()
