"""``fieldbot ocr IMAGE``, ``fieldbot transcribe AUDIO``, ``fieldbot models``: the bot's media
pipeline on a file, for an admin checking a deployment. Each prints one JSON object."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import date
from pathlib import Path

from integrations.media.config import MediaConfig


def add_subcommands(sub) -> None:
    p = sub.add_parser("ocr", help="OCR a storefront photo and match customers (JSON)")
    p.add_argument("image")
    p.add_argument("--database-url", default="", help="match against this customer list")
    p.add_argument("--engine", default="", help="rapidocr (default) | tesseract")
    p.set_defaults(fn=cmd_ocr)
    p = sub.add_parser("transcribe", help="transcribe a voice note and match customers (JSON)")
    p.add_argument("audio")
    p.add_argument("--database-url", default="")
    p.add_argument("--engine", default="", help="faster-whisper (default) | openai-whisper")
    p.add_argument("--model", default="", help="CTranslate2 dir or .pt (FIELDBOT_ASR_MODEL)")
    p.set_defaults(fn=cmd_transcribe)
    p = sub.add_parser("models", help="report the installed speech/OCR engines and weights")
    p.set_defaults(fn=cmd_models)


def _print(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


async def _rows(url: str) -> list[dict]:
    from bot.matching import load_rows
    from storage.db import async_engine

    engine = async_engine(url)
    try:
        from sqlmodel.ext.asyncio.session import AsyncSession

        async with AsyncSession(engine) as session:
            return await load_rows(session)
    finally:
        await engine.dispose()


def _match(url: str, texts: list[str]) -> tuple[list[dict], float, list[str]]:
    if not url:
        return [], 0.0, []
    from bot.matching import CustomerMatcher

    rows = asyncio.run(_rows(url))
    t0 = time.perf_counter()
    matcher = CustomerMatcher.from_rows(rows)
    cands = []
    for text in texts:
        if text and (cands := matcher.find(text)):
            break
    elapsed = time.perf_counter() - t0
    names = [r["short_name"] or r["name"] for r in rows[:30]]
    return ([{"customer_id": c.customer_id, "name": c.name, "score": round(c.score, 4),
              "kind": c.kind, "matched": c.matched} for c in cands], elapsed, names)


def _read(path: str) -> bytes | None:
    p = Path(path)
    if not p.is_file():
        _print({"ok": False, "error": f"no such file: {path}"})
        return None
    return p.read_bytes()


def cmd_ocr(args) -> int:
    from bot.platform import MediaError
    from integrations.media.ocr import get_ocr_engine, ocr_bytes

    cfg = MediaConfig.from_env()
    data = _read(args.image)
    if data is None:
        return 2
    t0 = time.perf_counter()
    try:
        engine = get_ocr_engine(args.engine or cfg.ocr_engine)
        res = ocr_bytes(data, engine, cfg.max_image_pixels)
    except MediaError as exc:
        _print({"ok": False, "error": str(exc), "message": getattr(exc, "user_message", "")})
        return 1
    total = time.perf_counter() - t0
    cands, match_s, _ = _match(args.database_url, [res.name, res.text])
    photo = res.photo
    _print({"ok": True, "engine": res.engine, "name": res.name, "text": res.text,
            "lines": [{"text": ln.text, "score": round(ln.score, 4)} for ln in res.lines],
            "candidates": cands,
            "gps": list(photo.gps) if photo and photo.gps else None,
            "taken_at": photo.taken_at.isoformat() if photo and photo.taken_at else None,
            "size": [photo.width, photo.height] if photo else None,
            "timings": {"ocr_s": round(res.seconds, 3), "total_s": round(total, 3),
                        "match_s": round(match_s, 4)}})
    return 0


def cmd_transcribe(args) -> int:
    from bot.platform import MediaError
    from integrations.media.asr import get_asr_engine, transcribe_bytes

    cfg = MediaConfig.from_env()
    data = _read(args.audio)
    if data is None:
        return 2
    _, _, hot = _match(args.database_url, [])  # customer names as Whisper hot words
    t0 = time.perf_counter()
    try:
        engine = get_asr_engine(args.engine or cfg.asr_engine, args.model or cfg.asr_model,
                                cfg.model_cache, threads=cfg.threads())
        t_load = time.perf_counter()
        load = getattr(engine, "load", None)
        if callable(load):
            load()
        load_s = time.perf_counter() - t_load
        tr = transcribe_bytes(data, engine, hot, cfg.max_audio_s)
    except MediaError as exc:
        _print({"ok": False, "error": str(exc), "message": getattr(exc, "user_message", "")})
        return 1
    total = time.perf_counter() - t0
    cands, match_s, _ = _match(args.database_url, [tr.text])
    from handlers.media import next_step_date

    found = next_step_date(tr.text, date.today())
    _print({"ok": True, "engine": tr.engine, "text": tr.text, "language": tr.language,
            "audio_seconds": round(tr.audio_seconds, 2), "container": tr.container,
            "candidates": cands, "next_step_date": found.isoformat() if found else None,
            "timings": {"load_s": round(load_s, 3), "decode_s": round(tr.decode_seconds, 3),
                        "transcribe_s": round(tr.seconds, 3), "rtf": round(tr.rtf, 3),
                        "total_s": round(total, 3), "match_s": round(match_s, 4)}})
    return 0


def cmd_models(args) -> int:
    from integrations.media.models import report

    cfg = MediaConfig.from_env()
    _print(report(cfg.asr_model, cfg.model_cache))
    return 0
