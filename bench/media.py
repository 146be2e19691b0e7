#!/usr/bin/env python3
"""Media pipeline benchmark: OCR latency, speech-to-text real-time factor, error rates.

Each case is measured for the default engine and, as the baseline in the same run, for the
design's alternative engine on the same inputs (Tesseract for OCR, openai-whisper for
speech-to-text, when installed): every case ends as one JSON line with the figures,
``baseline`` (the alternative's figure), ``ratio`` = figure / baseline, and the issue's
``target`` with ``target_met``. Cases:
- ``ocr_12mp`` / ``ocr_1600``: photo bytes → sign name (safe open + EXIF + downscale +
  RapidOCR), p50/max over the runs; target 2 s (photo → check-in card p50 < 2 s).
- ``stt_10s`` / ``stt_60s``: decode (ffmpeg) + faster-whisper base int8, p50 seconds and RTF;
  target 3 s for the 10 s note.
- ``ocr_cer``: name hit rate and mean name CER on a generated set (10 names × easy/hard,
  1500×2000); target hit rate ≥ 95 %.
- ``stt_cer``: mean CER of the committed voice fixtures (Mandarin AMR/AMR-DTX/Opus, English).

Needs fonts-noto-cjk (signs are rendered at run time) and ffmpeg.
Usage: python bench/media.py [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from integrations.media.asr import get_asr_engine, transcribe_bytes  # noqa: E402
from integrations.media.config import MediaConfig  # noqa: E402
from integrations.media.ocr import get_ocr_engine, ocr_bytes  # noqa: E402
from tests.media import make_fixtures  # noqa: E402
from tests.media.test_engines import cer  # noqa: E402

FIX = ROOT / "tests" / "media" / "fixtures"


def emit(case: str, figures: dict, target: float | None = None, key: str = "",
         higher_is_better: bool = False, baseline: dict | None = None) -> None:
    """One JSON line: ``figures`` of the default engine; ``baseline``: the same figures of the
    alternative engine measured in this run (``ratio`` = ours / theirs on ``key``)."""
    out = {"case": case, **figures}
    if baseline is not None and key in baseline:
        out["baseline"] = baseline[key]
        out["baseline_engine"] = baseline.get("engine", "")
        out["baseline_figures"] = baseline
        out["ratio"] = round(figures[key] / baseline[key], 3) if baseline[key] else None
    if target is not None and key:
        out["target"] = target
        out["target_met"] = (figures[key] >= target if higher_is_better
                             else figures[key] <= target)
    print(json.dumps(out, ensure_ascii=False), flush=True)


def p50(xs):
    return round(statistics.median(xs), 3)


def _ocr_cases(eng, big: Path, small: Path, name: str, runs: int) -> dict[str, dict]:
    out = {}
    ocr_bytes(small.read_bytes(), eng)  # warm-up (lazy model load)
    for case, path in (("ocr_12mp", big), ("ocr_1600", small)):
        data = path.read_bytes()
        times, ok = [], 0
        for _ in range(runs):
            t0 = time.perf_counter()
            res = ocr_bytes(data, eng)
            times.append(time.perf_counter() - t0)
            ok += res.name == name
        out[case] = {"engine": eng.name, "p50_s": p50(times), "max_s": round(max(times), 3),
                     "runs": runs, "bytes": len(data), "name_ok": f"{ok}/{runs}"}
    return out


def _ocr_set(eng, tmp: Path, truth: dict) -> dict:
    hits, cers, times = 0, [], []
    for fn, ref in truth.items():
        t0 = time.perf_counter()
        res = ocr_bytes((tmp / "set" / fn).read_bytes(), eng)
        times.append(time.perf_counter() - t0)
        hits += res.name == ref
        cers.append(cer(ref, res.name))
    return {"engine": eng.name, "images": len(truth), "hit_rate": round(hits / len(truth), 3),
            "name_cer": round(statistics.mean(cers), 4), "p50_s": p50(times)}


def bench_ocr(tmp: Path, runs: int, quick: bool) -> None:
    import shutil

    from PIL import Image

    eng = get_ocr_engine("rapidocr")
    eng.load()
    alt = None
    if shutil.which("tesseract"):
        alt = get_ocr_engine("tesseract")  # nothing to load: one tesseract process per call
    import random

    rng = random.Random(11)
    name, line2 = make_fixtures.SIGNS[0]
    scene = make_fixtures.sign_scene(rng, name, line2, hard=False, w=3000, h=4000)
    big = tmp / "12mp.jpg"
    scene.save(big, quality=85)
    small = tmp / "1600.jpg"
    scene.resize((1200, 1600), Image.LANCZOS).save(small, quality=80)
    ours = _ocr_cases(eng, big, small, name, runs)
    theirs = _ocr_cases(alt, big, small, name, runs) if alt else {}
    for case, figures in ours.items():
        emit(case, figures, 2.0, "p50_s", baseline=theirs.get(case))
    n = 4 if quick else 10
    truth = make_fixtures.signs_set(tmp / "set", n=n)
    emit("ocr_cer", _ocr_set(eng, tmp, truth), 0.95, "hit_rate", higher_is_better=True,
         baseline=_ocr_set(alt, tmp, truth) if alt else None)


def _clip(tmp: Path, seconds: float) -> bytes:
    """An Opus voice note of ``seconds`` made by looping the Mandarin fixtures."""
    srcs = [FIX / "visit_zh.ogg", FIX / "order_zh.ogg"]
    lst = tmp / f"list{seconds}.txt"
    lst.write_text("".join(f"file '{srcs[i % 2]}'\n" for i in range(int(seconds // 6) + 2)))
    out = tmp / f"clip{seconds}.ogg"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i",
                    str(lst), "-t", str(seconds), "-c:a", "libopus", "-b:a", "24k",
                    str(out)], check=True)
    return out.read_bytes()


def _stt_engine(name: str, cfg: MediaConfig):
    t0 = time.perf_counter()
    eng = get_asr_engine(name, cfg.asr_model, cfg.model_cache, threads=cfg.threads())
    eng.load()
    return eng, round(time.perf_counter() - t0, 2)


def _stt_cases(eng, load_s: float, clips: dict, hot: list[str], runs: int, quick: bool
               ) -> dict[str, dict]:
    out = {}
    for case, (_secs, data) in clips.items():
        n = runs if case == "stt_10s" else (1 if quick else 2)
        times, rtfs = [], []
        for _ in range(n):
            t1 = time.perf_counter()
            tr = transcribe_bytes(data, eng, hot)
            times.append(time.perf_counter() - t1)
            rtfs.append(times[-1] / tr.audio_seconds)
        out[case] = {"engine": eng.name, "p50_s": p50(times), "rtf": p50(rtfs), "runs": n,
                     "load_s": load_s, "audio_s": round(tr.audio_seconds, 1)}
    return out


def _stt_cer(eng, hot: list[str]) -> dict:
    truth = json.loads((FIX / "audio.json").read_text())
    per: dict[str, float] = {}
    for clip, info in truth.items():
        for suffix in (".amr", "_dtx.amr", ".ogg"):
            tr = transcribe_bytes((FIX / f"{clip}{suffix}").read_bytes(), eng, hot)
            per[f"{clip}{suffix}"] = round(cer(info["text"], tr.text), 4)
    zh = [v for k, v in per.items() if "_zh" in k]
    en = [v for k, v in per.items() if "_en" in k]
    return {"engine": eng.name, "cer_zh": round(statistics.mean(zh), 4),
            "cer_en": round(statistics.mean(en), 4), "per_clip": per}


def bench_stt(tmp: Path, runs: int, quick: bool) -> None:
    import importlib.util

    cfg = MediaConfig.from_env()
    hot = ["华东精密零部件有限公司", "苏州恒信电子科技有限公司"]
    clips = {"stt_10s": (10.0, _clip(tmp, 10.0)), "stt_60s": (60.0, _clip(tmp, 60.0))}
    eng, load_s = _stt_engine("faster-whisper", cfg)
    ours = _stt_cases(eng, load_s, clips, hot, runs, quick)
    ours_cer = _stt_cer(eng, hot)
    theirs: dict[str, dict] = {}
    theirs_cer = None
    if importlib.util.find_spec("whisper") is not None:
        alt, alt_load = _stt_engine("openai-whisper", cfg)
        theirs = _stt_cases(alt, alt_load, clips, hot, runs, quick)
        theirs_cer = _stt_cer(alt, hot)
    for case, figures in ours.items():
        emit(case, figures, 3.0 if case == "stt_10s" else clips[case][0] * 0.5, "p50_s",
             baseline=theirs.get(case))
    emit("stt_cer", ours_cer, 0.15, "cer_zh", baseline=theirs_cer)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["ocr", "stt"])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="fieldbot-bench-") as d:
        tmp = Path(d)
        if a.only in (None, "ocr"):
            bench_ocr(tmp, a.runs, a.quick)
        if a.only in (None, "stt"):
            bench_stt(tmp, a.runs, a.quick)


if __name__ == "__main__":
    main()
