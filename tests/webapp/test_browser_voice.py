"""A rep records a voice note in a real (headless Chromium) phone-sized browser and files it
as a visit: the page's MediaRecorder (WebM/Opus) captures the microphone, the recording is
transcribed by the real Whisper engine, the transcript fills the note, the customer and the
follow-up date it names are suggested, and the saved visit keeps the transcript.

The microphone is Chromium's fake capture device playing the committed Mandarin clip
(``tests/media/fixtures/visit_zh.ogg`` decoded to a WAV with ffmpeg): the sound really goes
through getUserMedia, the browser's Opus encoder and the upload, as on a phone.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import wave
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from handlers.visits import LOCAL_TZ
from tests.webapp.conftest import CHROMIUM, person, shot

FIXTURES = Path(__file__).parent.parent / "media" / "fixtures"
CLIP = json.loads((FIXTURES / "audio.json").read_text(encoding="utf-8"))["visit_zh"]["text"]
CUSTOMER = "华东精密零部件有限公司"  # the clip names it: 今天拜访了华东精密零部件有限公司…
WEBM_MAGIC = b"\x1a\x45\xdf\xa3"

# every state the voice box and the save button go through, recorded in the page: the
# progress note may be short-lived, a poll could miss it, an observer cannot
WATCH_VOICE = """() => {
  window.__voice = [];
  const box = document.getElementById("voice-status"), save = document.getElementById("save");
  const note = () => window.__voice.push({text: box.textContent, saveDisabled: save.disabled});
  new MutationObserver(note).observe(box, {childList: true, subtree: true,
                                           characterData: true});
}"""

# a microphone that takes a moment to open (as behind a phone's permission prompt), counting
# how often the page asks for one and keeping the streams to check they are released
SLOW_MIC = """(() => {
  window.__gum = 0;
  window.__streams = [];
  const md = navigator.mediaDevices, open = md.getUserMedia.bind(md);
  md.getUserMedia = (c) => {
    window.__gum += 1;
    return new Promise((ok) => setTimeout(ok, 300)).then(() => open(c)).then((s) => {
      window.__streams.push(s);
      return s;
    });
  };
})();"""
MIC_RELEASED = "window.__streams.every(s => s.getTracks().every(t => t.readyState === 'ended'))"


def _need(tool: str | None, what: str) -> str:
    if tool is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is not installed")
        pytest.skip(f"{what} not installed")
    return tool


def next_tuesday() -> date:
    """下周二: Tuesday of the following Monday-based calendar week, in the sales team's zone."""
    today = datetime.now(UTC).astimezone(LOCAL_TZ).date()
    return today - timedelta(days=today.weekday()) + timedelta(days=7 + 1)


@pytest.fixture
def clip_wav(tmp_path) -> tuple[Path, float]:
    """The clip as Chromium's fake microphone wants it (RIFF WAV, 16-bit PCM; any rate and
    channel count is converted), followed by a second of silence; and its length in s."""
    ffmpeg = _need(shutil.which("ffmpeg"), "ffmpeg")
    wav = tmp_path / "visit_zh.wav"
    subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-i",  # noqa: S603
                    str(FIXTURES / "visit_zh.ogg"), "-af", "apad=pad_dur=1", "-ac", "1",
                    "-ar", "48000", "-c:a", "pcm_s16le", str(wav)], check=True, timeout=60)
    with wave.open(str(wav)) as w:
        assert (w.getsampwidth(), w.getnchannels(), w.getframerate()) == (2, 1, 48000)
        return wav, w.getnframes() / w.getframerate()


@pytest.fixture
async def mic_browser(clip_wav):
    """Headless Chromium whose only microphone plays the clip once (``%noloop``), with the
    permission prompt answered yes."""
    _need(CHROMIUM, "chromium")
    from playwright.async_api import async_playwright

    wav, _ = clip_wav
    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--use-fake-ui-for-media-stream",
                  "--use-fake-device-for-media-stream",
                  f"--use-file-for-fake-audio-capture={wav}%noloop"])
        try:
            yield b
        finally:
            await b.close()


async def mic_login(browser, base: str, key: str):
    """A phone-sized page signed in as ``key`` (demo picker) that may use the microphone."""
    ctx = await browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN",
                                    permissions=["microphone"])
    await ctx.add_init_script(SLOW_MIC)
    page = await ctx.new_page()
    await page.goto(base + "/app/login")
    await page.click(f'button[data-user="{person(key).name}"]')
    await page.wait_for_url(base + "/app/")
    return page


@pytest.mark.slow
async def test_rep_records_voice_visit(web, mic_browser, clip_wav, tmp_path):
    _, seconds = clip_wav
    page = await mic_login(mic_browser, web.bot_url, "zhangsan")
    await page.goto(web.bot_url + "/app/visits/new")
    record = page.locator("#record")
    await record.wait_for(state="visible")  # MediaRecorder + getUserMedia are there
    await page.evaluate(WATCH_VOICE)

    await record.dblclick()  # an impatient double tap opens one microphone, not two
    status = page.locator("#voice-status")
    await status.get_by_text("录音中").wait_for(timeout=10_000)
    assert "停止" in await record.inner_text()
    assert await page.locator("#save").is_disabled()  # saving now would drop the recording
    await asyncio.sleep(seconds + 0.5)  # the whole clip plays into the microphone
    await record.click()  # stop → upload → transcribe (the first call loads the model)
    await status.locator(".ok").wait_for(timeout=120_000)
    await shot(page, "rep-voice-recorded")

    states = await page.evaluate("window.__voice")
    errors = [s["text"] for s in states if "失败" in s["text"] or "无法" in s["text"]]
    assert not errors, errors
    progress = [s for s in states if "转写中" in s["text"]]
    assert progress, states  # slow work shows progress …
    assert all(s["saveDisabled"] for s in progress)  # … and cannot be saved half-done
    assert "已转写" in await status.inner_text()
    assert await record.inner_text() == "录音 / Record"
    assert not await page.locator("#save").is_disabled()
    assert await page.evaluate("window.__gum") == 1
    assert await page.evaluate(MIC_RELEASED), "the microphone is still on"

    audio_ref = await page.input_value("#audio_ref")
    # what the browser sent (kept in the demo's file store): one WebM/Opus recording as long
    # as the clip, not a silent or truncated one
    [stored] = [p for p in tmp_path.rglob(f"{audio_ref}*") if p.is_file()]
    data = stored.read_bytes()
    assert hashlib.sha256(data).hexdigest() == audio_ref and stored.suffix == ".webm"
    assert data.startswith(WEBM_MAGIC) and b"A_OPUS" in data
    [(audio_seconds,)] = web.sql(
        "SELECT json_extract(detail, '$.audio_seconds') FROM audit_log "
        "WHERE action = 'media.transcribed' AND entity_id = :ref", ref=audio_ref)
    assert seconds - 2.5 <= audio_seconds <= seconds + 2.5, (audio_seconds, seconds)

    note = await page.input_value("#note")
    transcript = await page.input_value("#transcript")
    assert transcript and note == transcript, (note, transcript)
    assert "跟进" in transcript and "拜访" in transcript, (transcript, CLIP)
    assert CUSTOMER in await page.locator("#suggested").inner_text(), transcript
    assert await page.input_value("#customer_name") == CUSTOMER
    assert await page.input_value("#follow_up_on") == next_tuesday().isoformat(), transcript

    await page.click("#save")
    await page.wait_for_url(web.bot_url + "/app/visits?saved=1")
    row = page.locator("#visits tbody tr").first
    assert CUSTOMER in await row.inner_text()
    [(source, summary, evidence, name, follow, user)] = web.sql(
        "SELECT v.source, v.summary, v.evidence, c.name, v.follow_up_on, u.name FROM visits v "
        "JOIN customers c ON c.id = v.customer_id JOIN users u ON u.id = v.user_id")
    assert (source, summary, name, user) == ("voice", transcript, CUSTOMER, "张三")
    assert str(follow) == next_tuesday().isoformat()
    ev = json.loads(evidence)
    assert ev["transcript"] == transcript and ev["audio_sha256"] == audio_ref
    assert web.sql("SELECT due_on FROM tasks") == [(next_tuesday().isoformat(),)]
    assert web.sql("SELECT count(*) FROM audit_log WHERE action = 'visit.create'") == [(1,)]
