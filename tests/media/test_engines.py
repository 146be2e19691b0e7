"""The real engines on the committed fixtures, loaded offline (session-scoped models).

RapidOCR and Tesseract run in the default suite (~1-2 s per photo); Whisper runs are marked
slow (CI runs them). Speech assertions use key words / CER, never exact text."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest

from integrations.media.asr import get_asr_engine, transcribe_bytes
from integrations.media.ocr import TesseractEngine, ocr_bytes
from tests.media.conftest import AUDIO, SIGNS, fixture_bytes, needs_ffmpeg


def cer(ref: str, hyp: str) -> float:
    import re
    import unicodedata

    def norm(t: str) -> str:
        return re.sub(r"[\s\W_]+", "", unicodedata.normalize("NFKC", t)).upper()

    r, h = norm(ref), norm(hyp)
    prev = list(range(len(h) + 1))
    for i, a in enumerate(r, 1):
        cur = [i]
        for j, b in enumerate(h, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a != b)))
        prev = cur
    return prev[-1] / max(1, len(r))


@pytest.mark.parametrize("name", sorted(SIGNS))
def test_rapidocr_reads_every_sign_name_exactly(rapid, name):
    res = ocr_bytes(fixture_bytes(name), rapid)
    assert res.name == SIGNS[name]
    assert max(res.photo.image.size) == 1280 or max(res.photo.image.size) < 1280


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract not installed")
def test_tesseract_alternative_reads_the_easy_sign():
    res = ocr_bytes(fixture_bytes("sign_gps_rotated.jpg"), TesseractEngine())
    assert res.engine == "tesseract"
    assert cer(SIGNS["sign_gps_rotated.jpg"], res.name) <= 0.2


def test_cli_ocr_prints_one_json_object(tmp_path):
    out = subprocess.run([sys.executable, "-m", "bot.cli", "ocr",
                          str(tmp_path / "missing.jpg")], capture_output=True, text=True)
    assert out.returncode == 2 and json.loads(out.stdout)["ok"] is False
    (tmp_path / "x.png").write_bytes(b"not a png")
    out = subprocess.run([sys.executable, "-m", "bot.cli", "ocr", str(tmp_path / "x.png")],
                         capture_output=True, text=True)
    doc = json.loads(out.stdout)
    assert out.returncode == 1 and "不是可识别的图片" in doc["message"]


def test_cli_models_reports_offline_weights():
    out = subprocess.run([sys.executable, "-m", "bot.cli", "models"], capture_output=True,
                         text=True, check=True)
    doc = json.loads(out.stdout)
    assert doc["hub_offline"] is True and doc["engines"]["rapidocr"] is True


# -- speech (slow) ----------------------------------------------------------------------------
HOT = ["华东精密零部件有限公司", "苏州恒信电子科技有限公司"]


@pytest.mark.slow
@needs_ffmpeg
@pytest.mark.parametrize("name", ["visit_zh.ogg", "visit_zh_dtx.amr", "visit_zh.amr"])
def test_faster_whisper_mandarin_note(whisper, name):
    tr = transcribe_bytes(fixture_bytes(name), whisper, HOT)
    assert tr.language == "zh"
    assert "华东精密" in tr.text  # the hot word fixed the company name
    assert cer(AUDIO["visit_zh"]["text"], tr.text) < 0.3
    assert not any(ch in tr.text for ch in "這個對報價")  # Simplified, not Traditional


@pytest.mark.slow
@needs_ffmpeg
def test_faster_whisper_english_note_is_not_forced_to_chinese(whisper):
    tr = transcribe_bytes(fixture_bytes("visit_en.amr"), whisper, HOT)
    assert tr.language == "en"
    assert "follow up" in tr.text.lower() and "tuesday" in tr.text.lower()


@pytest.mark.slow
@needs_ffmpeg
@pytest.mark.skipif(importlib.util.find_spec("whisper") is None
                    or importlib.util.find_spec("torch") is None,
                    reason="openai-whisper (optional extra) not installed")
def test_openai_whisper_alternative(model_cache):
    eng = get_asr_engine("openai-whisper", "", model_cache, threads=2)
    assert eng.pt_path.suffix == ".pt" and eng.pt_path.exists()
    tr = transcribe_bytes(fixture_bytes("visit_zh.ogg"), eng, HOT)
    assert tr.engine == "openai-whisper" and tr.language == "zh"
    assert cer(AUDIO["visit_zh"]["text"], tr.text) < 0.35
