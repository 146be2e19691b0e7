"""The mini-app's photo and voice uploads, read in a worker process (issue 18).

The web process only streams the upload to the file store and queues one of these jobs
(``web.photo`` / ``web.voice``); a worker claims it under the global and per-user caps, runs
OCR or speech-to-text there, matches the text to customers, and stores a JSON result on the
job row, which the page's request (or its poll) reads. The web process never decodes an image
or an audio file, so its memory does not grow with what users upload.

A result is ``{"status": 200, …}`` or ``{"status": 4xx, "error": "<friendly message>"}``; the
customers are all candidates (the page shows only those the user may see).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bot.event import utcnow
from bot.matching import is_ambiguous
from bot.platform import MediaError
from handlers.media import hot_words_for
from handlers.visits import match_customers
from storage.models import AuditLog, Visit

# the capture page's placeholder summary for a voice-only visit
TRANSCRIBING = "语音记录（转写中）"

UNAVAILABLE = "识别服务暂不可用，请稍后重试 / Recognition is unavailable right now."
GONE = "文件已过期，请重新上传 / The file expired: upload it again."
NO_SPEECH = "没有听清这段语音，请再说一遍。/ I heard no speech; please retry."


def _refused(exc: MediaError) -> dict[str, Any]:
    return {"status": 422, "error": getattr(exc, "user_message", "") or UNAVAILABLE}


async def _read(services: Any, ref: str) -> bytes | None:
    return await asyncio.to_thread(services.files.get, ref)


def _cands(cands) -> list[dict[str, Any]]:
    return [{"customer_id": c.customer_id, "name": c.name, "score": round(c.score, 3)}
            for c in cands]


async def web_photo(session: Any, services: Any, args: dict) -> dict[str, Any]:
    data = await _read(services, str(args.get("ref", "")))
    if data is None:
        return {"status": 410, "error": GONE}
    try:
        res = await services.ocr(data)
    except MediaError as exc:
        return _refused(exc)
    user_id = args.get("user_id")
    name, text = res.name, res.text
    cands = await match_customers(session, name, user_id) if name else []
    if not cands and text.strip():
        cands = await match_customers(session, text, user_id)
    gps = res.photo.gps if res.photo and res.photo.gps else None
    out = {"status": 200, "text": text, "name": name, "engine": res.engine,
           "seconds": round(res.seconds, 2), "gps": list(gps) if gps else None,
           "candidates": _cands(cands), "ambiguous": is_ambiguous(cands)}
    await _attach(session, args, "photo", out)
    return out


async def web_voice(session: Any, services: Any, args: dict) -> dict[str, Any]:
    data = await _read(services, str(args.get("ref", "")))
    if data is None:
        return {"status": 410, "error": GONE}
    user_id = args.get("user_id")
    words = await hot_words_for(session, user_id)
    await session.commit()  # no read transaction held while the model runs
    try:
        tr = await services.transcribe(data, words)
    except MediaError as exc:
        return _refused(exc)
    text = tr.text.strip()
    if not text:
        return {"status": 422, "error": NO_SPEECH}
    cands = await match_customers(session, text, user_id)
    out = {"status": 200, "text": text, "language": tr.language, "engine": tr.engine,
           "seconds": round(tr.seconds, 2), "audio_seconds": round(tr.audio_seconds, 1),
           "candidates": _cands(cands), "ambiguous": is_ambiguous(cands)}
    await _attach(session, args, "voice", out)
    return out


async def _attach(session: Any, args: dict, kind: str, out: dict[str, Any]) -> None:
    """A visit filed with this media (the capture page's queue) gets what was read, in the
    job's transaction: the transcript replaces the "转写中" placeholder; a photo whose sign
    names another customer is flagged on the visit (a conflict shown, never silently moved)."""
    visit = await session.get(Visit, args["visit_id"]) if args.get("visit_id") else None
    if visit is None:
        return
    evidence = dict(visit.evidence or {})
    detail: dict[str, Any] = {"kind": kind}
    if kind == "voice":
        evidence["transcript"] = out["text"][:2000]
        if not visit.summary or visit.summary.startswith(TRANSCRIBING):
            visit.summary = out["text"][:500]
            detail["summary"] = "transcript"
    else:
        evidence["ocr_text"], evidence["ocr_name"] = out["text"][:500], out["name"][:100]
        top = out["candidates"][0] if out["candidates"] and not out["ambiguous"] else None
        if top is not None and top["customer_id"] != visit.customer_id:
            evidence["ocr_other_customer"] = {"id": top["customer_id"], "name": top["name"]}
            detail["conflict"] = top["customer_id"]
    visit.evidence = evidence
    session.add(visit)
    session.add(AuditLog(actor_id=args.get("user_id"), actor_ref="worker", platform="web",
                         action="visit.media_read", entity="visit", entity_id=str(visit.id),
                         detail=detail, at=utcnow()))


UPLOAD_JOBS = {"web.photo": web_photo, "web.voice": web_voice}
