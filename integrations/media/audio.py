"""Decode any voice message to 16 kHz mono PCM with the ffmpeg command-line tool.

WeCom sends AMR-NB (with or without DTX/SID frames), Feishu Opus in Ogg, DingTalk varies: the
container is sniffed from the bytes, never trusted from a name. ffmpeg's CLI drops the DTX
frames it cannot decode (PyAV raises on them), so every input goes through it, and the decoded
length is capped (default 5 min) so a huge file costs bounded work.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from integrations.media.errors import BadAudio, EngineUnavailable

RATE = 16000

CORRUPT = "无法解码这段语音，请重新录制。/ I could not decode this voice message; please resend."


def too_long_text(cap_s: float) -> str:
    mins = cap_s / 60
    cap = f"{mins:g} 分钟" if mins >= 1 else f"{cap_s:g} 秒"
    return (f"语音超过 {cap}，请分段发送。"
            f"/ Voice notes are limited to {cap_s:g} s; please split it.")


def sniff(data: bytes) -> str | None:
    """Container from magic bytes: amr, amr-wb, ogg, wav, mp3, mp4, webm, flac, silk; or None."""
    head = data[:64]
    if head.startswith(b"#!AMR-WB\n"):
        return "amr-wb"
    if head.startswith(b"#!AMR\n"):
        return "amr"
    if head.startswith(b"#!SILK") or head[1:].startswith(b"#!SILK"):
        return "silk"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    if head.startswith(b"fLaC"):
        return "flac"
    return None


@dataclass
class Decoded:
    pcm: object  # numpy float32 array, 16 kHz mono
    seconds: float
    container: str | None


def ffmpeg_path() -> str:
    path = shutil.which("ffmpeg")
    if not path:
        raise EngineUnavailable("ffmpeg is not installed (apt-get install ffmpeg)")
    return path


def decode(data: bytes, max_seconds: float = 300.0, timeout: float = 120.0) -> Decoded:
    """Bytes → float32 16 kHz mono. Raises ``BadAudio`` for non-audio, corrupt or over-long
    input (only ``max_seconds`` + 1 s are ever decoded)."""
    import numpy as np

    if not data:
        raise BadAudio("empty audio", CORRUPT)
    kind = sniff(data)
    if kind == "silk":
        raise BadAudio("SILK audio is not supported by ffmpeg", CORRUPT)
    ff = ffmpeg_path()
    with tempfile.TemporaryDirectory(prefix="fieldbot-audio-") as tmp:
        src = Path(tmp) / f"in.{kind or 'bin'}"
        src.write_bytes(data)
        cmd = [ff, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(src),
               "-vn", "-map", "0:a:0", "-t", f"{max_seconds + 1:.3f}", "-f", "s16le",
               "-acodec", "pcm_s16le", "-ac", "1", "-ar", str(RATE), "pipe:1"]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout,  # noqa: S603
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise BadAudio("ffmpeg timed out", CORRUPT) from exc
    raw = proc.stdout
    if proc.returncode != 0 and len(raw) < RATE // 5:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["?"]
        raise BadAudio(f"ffmpeg failed ({kind or 'unknown'}): {err[0][:200]}", CORRUPT)
    samples = len(raw) // 2
    if samples < RATE // 10:  # under 0.1 s of sound: nothing to transcribe
        raise BadAudio(f"no audio decoded ({kind or 'unknown'})", CORRUPT)
    seconds = samples / RATE
    if seconds > max_seconds + 0.5:
        raise BadAudio(f"audio longer than {max_seconds:g} s", too_long_text(max_seconds))
    pcm = np.frombuffer(raw[: samples * 2], dtype="<i2").astype(np.float32) / 32768.0
    return Decoded(pcm=pcm, seconds=seconds, container=kind)
