"""Voice note and storefront photo end to end through the WeCom simulator: callback → ack →
durable job in the worker → card → tap 保存 → visit row. Bad input gets a clear message and
the worker goes on. OCR runs the real RapidOCR; speech-to-text uses an edge fake here (real
ffmpeg decode) and the real Whisper in the slow case."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session

from jobs.worker import JOB_WORKER
from storage.db import sync_engine
from storage.models import Customer, Identity, User
from tests.media.conftest import FakeASR, fixture_bytes, needs_ffmpeg
from tests.media.test_units import bomb_png
from tests.wecom.conftest import Env, start_env

REP = "zhangsan"


def seed(db_url: str) -> dict[str, int]:
    eng = sync_engine(db_url)
    try:
        with Session(eng) as s:
            u = User(name="张三")
            s.add(u)
            s.flush()
            s.add(Identity(user_id=u.id, platform="wecom", app_id="wx5823bf96d3bd56c7",
                           external_id=REP, display_name="张三"))
            a = Customer(name="华东精密零部件有限公司", short_name="华东精密", owner_id=u.id)
            b = Customer(name="苏州恒信电子科技有限公司", short_name="恒信电子", owner_id=u.id)
            s.add(a)
            s.add(b)
            s.commit()
            return {"user": u.id, "huadong": a.id, "hengxin": b.id}
    finally:
        eng.dispose()


@pytest.fixture
async def env(db_url, tmp_path, rapid):
    e, sim_server = await start_env(db_url, tmp_path)
    e.ids = seed(db_url)
    worker = e.app[JOB_WORKER]
    worker.services._ocr = rapid
    yield e
    await e.bot.close()
    await sim_server.close()


def texts(env: Env) -> list[str]:
    return [c.body["text"]["content"] for c in env.sim.sent(REP) if c.body["msgtype"] == "text"]


def cards(env: Env) -> list[dict]:
    return [c for c in env.sim.sent(REP) if c.body["msgtype"] == "template_card"]


async def tap_first(env: Env, call) -> None:
    tpl = call.body["template_card"]
    key = tpl["button_list"][0]["key"]
    await env.sim.tap_card(env.url, REP, key, tpl["task_id"],
                           response_code=call.result["response_code"])


async def wait_jobs(env: Env, timeout: float = 60.0) -> None:
    """Every acknowledged message handled (its jobs exist), every job run, every reply sent."""
    await env.wait_for(lambda: env.count("inbox_events", "status='pending'") == 0
                       and env.count("jobs", "status='pending'") == 0
                       and env.count("outbox", "status='pending'") == 0, timeout, "jobs done")


@needs_ffmpeg
async def test_voice_note_becomes_a_visit(env: Env):
    fake = FakeASR("今天拜访了華東精密零部件有限公司，客户对报价有疑问，下周二再跟进。")
    env.app[JOB_WORKER].services._asr = fake
    env.sim.add_media("v1", fixture_bytes("visit_zh_dtx.amr"))
    await env.sim.send_voice(env.url, REP, "v1")
    await env.wait_for(lambda: cards(env), 30, "draft card")
    # WeCom's voice callback carries no duration: no "0 秒" in the acknowledgement …
    assert texts(env)[0].startswith("收到语音\n") and "正在转写" in texts(env)[0]
    assert fake.hot_words[:2] and "华东精密" in fake.hot_words
    call = cards(env)[0]
    tpl = call.body["template_card"]
    dump = json.dumps(tpl, ensure_ascii=False)
    # … the transcript card gives the length measured from the audio
    from integrations.media.audio import decode

    secs = round(decode(fixture_bytes("visit_zh_dtx.amr")).seconds)
    assert secs > 0 and f"（{secs} 秒）" in dump
    assert "华东精密零部件有限公司" in dump and "下周二" in dump  # simplified (t2s) transcript
    assert "跟进" in dump
    await tap_first(env, call)
    await env.wait_for(lambda: env.count("visits") == 1, 10, "visit row")
    src, cust, evidence = env.sql("SELECT source, customer_id, evidence FROM visits")[0]
    evidence = json.loads(evidence) if isinstance(evidence, str) else evidence
    assert src == "voice" and cust == env.ids["huadong"]
    assert len(evidence["audio_sha256"]) == 64
    assert "华东精密" in evidence["messages"][0]["text"]
    assert env.count("jobs", "status='done'") == 1


async def test_photo_checkin_saves_a_visit_with_the_photo(env: Env):
    env.sim.add_media("p1", fixture_bytes("sign_gps_rotated.jpg"), "image/jpeg")
    await env.sim.send_image(env.url, REP, "p1")
    await env.wait_for(lambda: cards(env), 60, "check-in card")
    assert texts(env)[0].startswith("收到图片\n正在识别")
    call = cards(env)[0]
    dump = json.dumps(call.body["template_card"], ensure_ascii=False)
    assert "在 华东精密零部件有限公司 签到？" in dump
    assert "31.29" in dump and "120.58" in dump  # GPS from EXIF
    await tap_first(env, call)
    await env.wait_for(lambda: env.count("visits") == 1, 10, "visit row")
    src, cust, evidence = env.sql("SELECT source, customer_id, evidence FROM visits")[0]
    evidence = json.loads(evidence) if isinstance(evidence, str) else evidence
    assert src == "photo" and cust == env.ids["huadong"]
    sha = evidence["photo_sha256"]
    store = env.app[JOB_WORKER].services.files
    assert store.get(sha) == fixture_bytes("sign_gps_rotated.jpg")


async def test_unknown_sign_offers_a_new_customer(env: Env):
    env.sim.add_media("p2", fixture_bytes("sign_unknown.jpg"), "image/jpeg")
    await env.sim.send_image(env.url, REP, "p2")
    await env.wait_for(lambda: cards(env), 60, "new customer card")
    call = cards(env)[0]
    dump = json.dumps(call.body["template_card"], ensure_ascii=False)
    assert "新建客户" in dump and "杭州云帆物流有限公司" in dump
    await tap_first(env, call)
    await env.wait_for(lambda: env.count("visits") == 1, 10, "visit row")
    assert env.count("customers", "name='杭州云帆物流有限公司'") == 1


@needs_ffmpeg
async def test_bad_media_gets_clear_messages_and_the_worker_survives(env: Env):
    env.app[JOB_WORKER].services._asr = FakeASR("拜访华东精密")
    env.app[JOB_WORKER].services.config.media_max_bytes = 200_000
    env.sim.add_media("bad-audio", b"this is not audio" * 100, "audio/amr")
    env.sim.add_media("not-image", b"%PDF-1.4 not an image", "image/jpeg")
    env.sim.add_media("bomb", bomb_png(), "image/png")
    env.sim.add_media("huge", b"\xff\xd8\xff" + b"\x00" * 300_000, "image/jpeg")
    await env.sim.send_voice(env.url, REP, "bad-audio")
    await env.sim.send_image(env.url, REP, "not-image")
    await env.sim.send_image(env.url, REP, "bomb")
    await env.sim.send_image(env.url, REP, "huge")
    await env.sim.send_voice(env.url, REP, "missing-media-id")
    await wait_jobs(env)
    # (identical acks within 30 min are dropped by WeCom's duplicate check: not counted here)
    errors = [t for t in texts(env) if "正在" not in t]
    assert len(errors) == 5, errors
    got = "\n".join(errors)
    assert "无法解码这段语音" in got
    assert "不是可识别的图片" in got
    assert "图片尺寸过大" in got
    assert "文件过大" in got
    assert "无法下载" in got
    assert env.count("jobs", "status='done'") == 5 and env.count("visits") == 0
    # the worker is still there: a good voice note still becomes a card
    env.sim.add_media("ok", fixture_bytes("visit_zh.ogg"))
    await env.sim.send_voice(env.url, REP, "ok")
    await env.wait_for(lambda: cards(env), 30, "draft card after bad input")


@pytest.mark.slow
@needs_ffmpeg
async def test_real_whisper_voice_note_end_to_end(env: Env, whisper):
    env.app[JOB_WORKER].services._asr = whisper
    env.sim.add_media("v2", fixture_bytes("visit_zh.amr"))
    await env.sim.send_voice(env.url, REP, "v2")
    await env.wait_for(lambda: cards(env), 60, "draft card")
    dump = json.dumps(cards(env)[0].body["template_card"], ensure_ascii=False)
    assert "华东精密零部件有限公司" in dump
