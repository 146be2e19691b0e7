"""Speech-to-text engines behind one interface.

Default: faster-whisper (CTranslate2) with Whisper *base*, int8, beam 5, automatic language,
``initial_prompt = "以下是普通话的句子。" + hot words`` (the rep's customer names) and an OpenCC
Traditional→Simplified pass. Forcing ``language="zh"`` breaks English notes (MEDIA.md §3), so
the language is detected. Alternative: openai-whisper with a ``.pt`` (same weights).
Audio is always decoded by ``audio.decode`` (ffmpeg CLI) and passed as a float32 array.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from integrations.media.audio import decode
from integrations.media.errors import EngineUnavailable

ZH_PROMPT = "以下是普通话的句子。"
MAX_PROMPT_CHARS = 180  # Whisper keeps ~224 prompt tokens; leave room


def build_prompt(hot_words: list[str] | None) -> str:
    words: list[str] = []
    used = len(ZH_PROMPT)
    for w in hot_words or []:
        w = w.strip()
        if not w or w in words:
            continue
        if used + len(w) + 1 > MAX_PROMPT_CHARS:
            break
        words.append(w)
        used += len(w) + 1
    return ZH_PROMPT + ("、".join(words) + "。" if words else "")


def strip_prompt_echo(text: str) -> str:
    """Whisper sometimes repeats its prompt on speech it cannot place: drop those echoes."""
    return text.replace(ZH_PROMPT.rstrip("。"), "").strip(" 。.,，")


_t2s = None
_t2s_lock = threading.Lock()


def to_simplified(text: str) -> str:
    global _t2s
    with _t2s_lock:
        if _t2s is None:
            try:
                import opencc
            except ImportError as exc:  # pragma: no cover
                raise EngineUnavailable("opencc is not installed") from exc
            _t2s = opencc.OpenCC("t2s")
    return _t2s.convert(text)


@dataclass
class Transcript:
    text: str
    language: str
    audio_seconds: float
    engine: str
    seconds: float = 0.0  # wall time of the model call
    decode_seconds: float = 0.0
    container: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def rtf(self) -> float:
        return self.seconds / self.audio_seconds if self.audio_seconds else 0.0


class ASREngine(Protocol):
    name: str

    def transcribe_pcm(self, pcm, hot_words: list[str] | None = None) -> tuple[str, str]:
        """float32 16 kHz mono → (text, language)."""
        ...


class FasterWhisperEngine:
    name = "faster-whisper"

    def __init__(self, model_dir: Path, threads: int = 2, beam_size: int = 5,
                 compute_type: str = "int8") -> None:
        self.model_dir, self.threads = Path(model_dir), threads
        self.beam_size, self.compute_type = beam_size, compute_type
        self._model = None
        self._lock = threading.Lock()

    def load(self):
        if self._model is None:
            try:
                from faster_whisper import WhisperModel
            except ImportError as exc:  # pragma: no cover
                raise EngineUnavailable("faster-whisper is not installed") from exc
            self._model = WhisperModel(str(self.model_dir), device="cpu",
                                       compute_type=self.compute_type, cpu_threads=self.threads,
                                       local_files_only=True)
        return self._model

    def transcribe_pcm(self, pcm, hot_words=None):
        with self._lock:  # one transcription at a time per model: CPU-bound anyway
            model = self.load()
            segments, info = model.transcribe(
                pcm, beam_size=self.beam_size, language=None,
                initial_prompt=build_prompt(hot_words), condition_on_previous_text=False,
                vad_filter=False)
            text = strip_prompt_echo("".join(s.text for s in segments))
            if not text:  # the prompt was echoed instead of the speech: retry without it
                probs = dict(info.all_language_probs or [])
                lang = "en" if probs.get("en", 0) >= probs.get("zh", 0) else "zh"
                segments, info = model.transcribe(pcm, beam_size=self.beam_size, language=lang,
                                                  condition_on_previous_text=False)
                text = strip_prompt_echo("".join(s.text for s in segments))
        return text, info.language


class OpenAIWhisperEngine:
    name = "openai-whisper"

    def __init__(self, pt_path: Path, threads: int = 2, beam_size: int = 5) -> None:
        self.pt_path, self.threads, self.beam_size = Path(pt_path), threads, beam_size
        self._model = None
        self._lock = threading.Lock()

    def load(self):
        if self._model is None:
            try:
                import torch
                import whisper
            except ImportError as exc:
                raise EngineUnavailable("openai-whisper (and torch) are not installed") from exc
            torch.set_num_threads(self.threads)
            self._model = whisper.load_model(str(self.pt_path), device="cpu")
        return self._model

    def transcribe_pcm(self, pcm, hot_words=None):
        with self._lock:
            model = self.load()
            r = model.transcribe(pcm, fp16=False, language=None, beam_size=self.beam_size,
                                 initial_prompt=build_prompt(hot_words),
                                 condition_on_previous_text=False)
            text = strip_prompt_echo(str(r.get("text", "")))
            if not text:
                r = model.transcribe(pcm, fp16=False, beam_size=self.beam_size,
                                     condition_on_previous_text=False)
                text = strip_prompt_echo(str(r.get("text", "")))
        return text, str(r.get("language", ""))


_ENGINES: dict[tuple, ASREngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_asr_engine(name: str = "faster-whisper", model: str = "",
                   cache: Path | None = None, threads: int = 2) -> ASREngine:
    """One engine per (name, model) per process; weights are resolved offline."""
    from integrations.media.config import MediaConfig
    from integrations.media.models import openai_pt_for, resolve_asr_model

    cache = cache or MediaConfig().model_cache
    key = (name, model, str(cache))
    with _ENGINES_LOCK:
        if key in _ENGINES:
            return _ENGINES[key]
        kind, path = resolve_asr_model(model, cache)
        if name in ("faster-whisper", "faster_whisper", "fw"):
            if kind != "ct2":
                raise EngineUnavailable("faster-whisper needs a CTranslate2 model directory")
            eng: ASREngine = FasterWhisperEngine(path, threads=threads)
        elif name in ("openai-whisper", "whisper", "openai"):
            eng = OpenAIWhisperEngine(path if kind == "pt" else openai_pt_for(path, cache),
                                      threads=threads)
        else:
            raise EngineUnavailable(f"unknown ASR engine {name!r} (faster-whisper | "
                                    "openai-whisper)")
        _ENGINES[key] = eng
        return eng


def transcribe_bytes(data: bytes, engine: ASREngine, hot_words: list[str] | None = None,
                     max_seconds: float = 300.0) -> Transcript:
    """Decode (ffmpeg), transcribe, convert to Simplified. Raises ``BadAudio``."""
    t0 = time.perf_counter()
    dec = decode(data, max_seconds=max_seconds)
    t1 = time.perf_counter()
    text, lang = engine.transcribe_pcm(dec.pcm, hot_words)
    t2 = time.perf_counter()
    return Transcript(text=to_simplified(text), language=lang, audio_seconds=dec.seconds,
                      engine=engine.name, seconds=t2 - t1, decode_seconds=t1 - t0,
                      container=dec.container)
