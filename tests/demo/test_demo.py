"""The demo end to end: chat page API → real callbacks → bot → fake platform API → page."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from simulator.demo import start_demo
from simulator.seed import seed
from simulator.server import APP_ID_FIELD, CREDENTIALS, Simulator

PLATFORMS = ["wecom", "dingtalk", "feishu"]


@pytest.fixture
async def stack(tmp_path):
    s = await start_demo("127.0.0.1", 0, tmp_path / "demo")
    async with aiohttp.ClientSession(s.sim.url) as http:
        s.http = http
        yield s
    await s.stop()


async def get_messages(stack, platform: str, user: str) -> list[dict]:
    async with stack.http.get("/demo/api/messages",
                              params={"platform": platform, "user": user}) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["messages"]


async def wait_for(stack, platform, user, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        msgs = await get_messages(stack, platform, user)
        bot = [m for m in msgs if m["from"] == "bot"]
        found = pred(bot)
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; bot messages: {bot}")
        await asyncio.sleep(0.05)


async def post(stack, path, body):
    async with stack.http.post(path, json=body) as r:
        assert r.status == 200, await r.text()
        return await r.json()


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_help_card_tap_and_echo(stack, platform):
    if platform not in (stack.sim.bot_platforms or []):
        pytest.skip(f"{platform} not available")
    user = "zhangsan"
    res = await post(stack, "/demo/api/say", {"platform": platform, "user": user, "text": "help"})
    assert res["status"] == 200, res

    cards = await wait_for(stack, platform, user,
                           lambda bot: [m for m in bot if m["kind"] == "card"])
    card = cards[0]
    assert card["card"]["buttons"], card
    assert "张三" in str(card["card"]), card  # the seeded identity was recognised

    tap = await post(stack, "/demo/api/tap", {"platform": platform, "user": user,
                                               "card": card["id"], "button": 0})
    assert tap["status"] == 200, tap
    if platform == "feishu":
        assert tap["toast"] and tap["toast"]["text"], tap

    def updated(bot):
        return [m for m in bot if m["id"] == card["id"] and m["updated"]]

    (new,) = await wait_for(stack, platform, user, updated)
    assert not new["card"]["buttons"]
    assert "已读" in str(new["card"]), new

    await post(stack, "/demo/api/say", {"platform": platform, "user": user, "text": "hello"})
    await wait_for(stack, platform, user,
                   lambda bot: [m for m in bot if "收到文字：hello" in m["text"]])


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_voice_and_photo(stack, platform):
    if platform not in (stack.sim.bot_platforms or []):
        pytest.skip(f"{platform} not available")
    user = "lisi"
    await post(stack, "/demo/api/say", {"platform": platform, "user": user, "kind": "voice"})
    await wait_for(stack, platform, user, lambda bot: [m for m in bot if "收到语音" in m["text"]])
    await post(stack, "/demo/api/say", {"platform": platform, "user": user, "kind": "image"})
    await wait_for(stack, platform, user, lambda bot: [m for m in bot if "收到图片" in m["text"]])


async def test_page_and_people(stack):
    async with stack.http.get("/") as r:
        assert r.status == 200
        assert "FieldBot" in await r.text()
    async with stack.http.get("/static/app.js") as r:
        assert r.status == 200
    async with aiohttp.ClientSession() as http, http.get(stack.page_url) as r:
        assert r.status == 200  # the page is on the bot's port too
    async with stack.http.get("/demo/api/people") as r:
        info = await r.json()
    assert {p["key"] for p in info["people"]} >= {"zhangsan", "wangzong", "qiancaiwu"}
    assert info["platforms"] == stack.sim.bot_platforms


async def test_bad_requests_are_4xx(stack):
    async with stack.http.post("/demo/api/say", data=b"nope") as r:
        assert r.status == 400
    async with stack.http.post("/demo/api/say", json={"platform": "msn", "user": "x",
                                                      "text": "hi"}) as r:
        assert r.status == 400
    async with stack.http.post("/demo/api/tap", json={"platform": "wecom", "user": "zhangsan",
                                                      "card": "nope", "button": 0}) as r:
        assert r.status == 404


def test_seed_is_idempotent(db_url):
    apps = {p: CREDENTIALS[p][APP_ID_FIELD[p]] for p in PLATFORMS}
    first = seed(db_url, apps)
    second = seed(db_url, apps)
    assert first == second
    assert first["users"] == 9 and first["customers"] == 12
    assert first["identities"] == 9 * len(apps)


def test_settings_overrides_point_at_the_simulator():
    from config import load_settings

    sim = Simulator()
    sim.port = 12345
    settings = load_settings(database_url="sqlite://", **sim.settings_overrides())
    assert set(settings.enabled_platforms()) == set(sim.platforms)
    for p in sim.platforms:
        assert getattr(settings, f"{p}_api_base") == "http://127.0.0.1:12345"


def card_text(m: dict) -> str:
    import json

    return json.dumps(m["card"], ensure_ascii=False)


@pytest.mark.dates  # the follow-up date ("下周二") is relative to today
@pytest.mark.parametrize("platform", PLATFORMS)
async def test_sample_voice_note_and_photos_make_the_right_cards(stack, platform):
    """The newcomer's path, through the real callbacks and the real recognisers: the sample
    voice note (Mandarin, names 华东精密 and 下周二) → a visit draft for that customer with
    next Tuesday as the follow-up; the sample storefront photos → a check-in for the customer
    on the sign, and the unknown company's sign → the new-customer offer."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    if platform not in (stack.sim.bot_platforms or []):
        pytest.skip(f"{platform} not available")
    user = "zhangsan"
    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date()
    next_tuesday = today - timedelta(days=today.weekday()) + timedelta(days=8)
    async with stack.http.get("/demo/api/people") as r:
        samples = (await r.json())["samples"]
    assert {p["id"] for p in samples["photos"]} >= {"sign_huadong", "sign_jinling"}

    def newest_card(*needles):
        def pred(bot):
            cards = [m for m in bot if m["kind"] == "card"]
            return cards[-1:] if cards and all(n in card_text(cards[-1]) for n in needles) \
                else None
        return pred

    await post(stack, "/demo/api/say", {"platform": platform, "user": user, "kind": "voice",
                                        "sample": "visit_huadong"})
    (voice,) = await wait_for(stack, platform, user,
                              newest_card("华东精密零部件有限公司", "语音"), timeout=90)
    assert next_tuesday.isoformat() in card_text(voice), card_text(voice)
    assert "秒）" in card_text(voice)  # the measured length, never "0 秒"
    # the second voice note: lisi's customer 金陵化工 and "下周四" (next week's Thursday)
    next_thursday = today - timedelta(days=today.weekday()) + timedelta(days=10)
    await post(stack, "/demo/api/say", {"platform": platform, "user": "lisi", "kind": "voice",
                                        "sample": "visit_jinling"})
    (voice,) = await wait_for(stack, platform, "lisi",
                              newest_card("南京金陵化工集团", "语音"), timeout=90)
    assert next_thursday.isoformat() in card_text(voice), card_text(voice)
    # the demo's registry (the simulator's fake 天眼查 API) answers for each sign
    signs = (("sign_huadong", "华东精密零部件有限公司", "91310115MA1K4F2D6R"),
             ("sign_jinling", "南京金陵化工集团", "91320100MA1R7J8K4L"))
    for sample, name, code in signs:
        await post(stack, "/demo/api/say", {"platform": platform, "user": user,
                                            "kind": "image", "sample": sample})
        (card,) = await wait_for(stack, platform, user, newest_card(f"在 {name} 签到"),
                                 timeout=90)
        assert code in card_text(card) and "存续" in card_text(card), card_text(card)
    await post(stack, "/demo/api/say", {"platform": platform, "user": user, "kind": "image",
                                        "sample": "sign_unknown"})
    (card,) = await wait_for(stack, platform, user, newest_card("杭州云帆物流有限公司"),
                             timeout=90)
    assert "91330106MA2H5Y3K0F" in card_text(card) and "吊销" in card_text(card), card_text(card)


async def test_own_upload_is_sent_like_a_platform_file(stack):
    """A file of the user's own (base64 from the page): stored in the fake's media store and
    announced with the platform's callback; bad uploads are 4xx."""
    import base64
    from pathlib import Path

    jpg = (Path(__file__).resolve().parents[2] / "simulator/static/samples/sign_huadong.jpg")
    data = base64.b64encode(jpg.read_bytes()).decode()
    await post(stack, "/demo/api/say", {"platform": "dingtalk", "user": "zhangsan",
                                        "kind": "image", "data": data, "mime": "image/jpeg",
                                        "name": "门头.jpg"})
    checkin = "在 华东精密零部件有限公司 签到"
    await wait_for(stack, "dingtalk", "zhangsan", lambda bot: [
        m for m in bot if m["kind"] == "card" and checkin in card_text(m)], timeout=90)
    for bad in ({"data": "!!notbase64!!"}, {"sample": "nope"}):
        async with stack.http.post("/demo/api/say", json={
                "platform": "wecom", "user": "zhangsan", "kind": "image", **bad}) as r:
            assert r.status == 400, bad
