"""Media fixtures: the committed files, session-scoped real engines, a seeded WeCom bot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

FIX = Path(__file__).resolve().parent / "fixtures"
SIGNS = json.loads((FIX / "signs.json").read_text())
AUDIO = json.loads((FIX / "audio.json").read_text())


def fixture_bytes(name: str) -> bytes:
    return (FIX / name).read_bytes()


needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def rapid():
    from integrations.media.ocr import get_ocr_engine

    eng = get_ocr_engine("rapidocr")
    eng.load()
    return eng


@pytest.fixture(scope="session")
def whisper(model_cache):
    from integrations.media.asr import get_asr_engine

    eng = get_asr_engine("faster-whisper", "", model_cache, threads=2)
    eng.load()
    return eng


class FakeASR:
    """Edge fake for fast end-to-end tests: real ffmpeg decode, canned text."""

    name = "fake"

    def __init__(self, text: str):
        self.text = text
        self.calls = 0

    def transcribe_pcm(self, pcm, hot_words=None):
        self.calls += 1
        self.hot_words = hot_words
        return self.text, "zh"
