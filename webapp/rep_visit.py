"""The visit form: customer (search with suggestions), note, follow-up date, a photo of the
sign (→ OCR → customer suggestion) and a voice note (→ transcript → note and date).

The photo and the voice note are posted on their own (``/app/visits/photo``, ``/voice``) while
the rep keeps typing; they answer JSON and the form keeps the stored file's hash. The media
work is the chat's: ``MediaServices`` (EXIF rotation, downscale, pixel cap and bomb checks,
ffmpeg decoding, hot words, Traditional → Simplified) and the same customer matcher; bad input
is a 4xx with a message the page shows (``MediaError.user_message``), never a 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlmodel import or_, select

from bot.matching import is_ambiguous
from handlers.media import AUDIO_EXT, next_step_date
from handlers.visits import (
    already_saved,
    lock_customer,
    match_customers,
    visit_audit_detail,
    write_visit,
)
from storage.models import Customer, Job, User
from webapp.auth import require
from webapp.core import current_user, web_ctx
from webapp.render import render
from webapp.rep import audit, local_today, scoped, small_int
from webapp.scope import may_see, visible_user_ids

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

SHA = re.compile(r"^[0-9a-f]{64}$")
MAX_NOTE = 2000
WAIT_S = 25.0  # an upload's request waits this long for its result, then answers 202 + poll
POLL_WAIT_S = 10.0
NO_FILE = "请选择一个文件 / Choose a file first."
TOO_BIG = "文件过大 / The file is too large."
UNAVAILABLE = "识别服务暂不可用，请稍后重试 / Recognition is unavailable right now."
# a browser's MediaRecorder sends WebM (Chromium, Firefox) besides what the chat platforms send
VOICE_EXT = {**AUDIO_EXT, "webm": ".webm"}


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _spooled(request: web.Request, field: str) -> web.FileField | web.Response:
    """The multipart file ``field`` (aiohttp spools file parts to a temporary file, so it is
    never whole in memory), or a JSON error response."""
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        return _json_error(413, TOO_BIG)
    except ValueError:
        return _json_error(400, NO_FILE)
    f = form.get(field)
    if not isinstance(f, web.FileField):
        return _json_error(400, NO_FILE)
    f.file.seek(0, 2)
    empty = f.file.tell() == 0
    f.file.seek(0)
    return _json_error(400, NO_FILE) if empty else f


def _visible(scope: Any, owners: dict[int, int | None], cands: list[dict[str, Any]]
             ) -> tuple[list[dict[str, Any]], int]:
    mine = [c for c in cands if may_see(scope, owners.get(c["customer_id"]))]
    return mine, len(cands) - len(mine)


async def _visible_candidates(db: Any, user: User, cands: list[dict[str, Any]]
                              ) -> tuple[list[dict[str, Any]], int]:
    """The candidates this user may file a visit for, and how many others matched (another
    team's customers are never named to a rep)."""
    if not cands:
        return [], 0
    scope = await visible_user_ids(db, user)
    owners = dict((await db.exec(select(Customer.id, Customer.owner_id).where(
        Customer.id.in_([c["customer_id"] for c in cands])))).all())
    return _visible(scope, owners, cands)


def _media(request: web.Request) -> Any:
    svc = web_ctx(request).services.get("media")
    if svc is None:
        raise web.HTTPServiceUnavailable(text=json.dumps({"error": UNAVAILABLE}),
                                         content_type="application/json")
    return svc


async def _queue(request: web.Request, field: str, job: str,
                 ext_of: Callable[[str], str]) -> tuple[int, str] | web.Response:
    """Stream the upload to the file store and queue its recognition for a worker process
    (``jobs/media_uploads``): ``(job id, file ref)`` or the JSON error the page shows. The
    same file uploaded again by the same person reuses its job (and its result)."""
    user = current_user(request)
    f = await _spooled(request, field)
    if isinstance(f, web.Response):
        return f
    svc = _media(request)
    try:
        ref = await asyncio.to_thread(svc.files.put_stream, f.file, ext_of(f.filename or ""))
    except ValueError:  # the file store's per-file cap
        return _json_error(413, TOO_BIG)
    key = f"{job}:{user.id}:{ref}"
    for _attempt in range(3):  # the same file sent twice at once: one job, both wait on it
        async with web_ctx(request).session() as db:
            row = (await db.exec(select(Job).where(Job.idem_key == key))).first()
            if row is None:
                row = Job(idem_key=key, name=job, owner=f"web:{user.id}",
                          args={"ref": ref, "user_id": user.id}, next_at=datetime.now(UTC))
                db.add(row)
            elif row.status == "failed":  # a retry by hand: run it again
                row.status, row.attempts, row.claimed_until = "pending", 0, None
                row.next_at = datetime.now(UTC)
            audit(db, user, "media.queued", job, ref)
            try:
                await db.commit()
            except IntegrityError:
                await db.rollback()
                continue
            return row.id, ref
    return _json_error(503, UNAVAILABLE)


async def _outcome(request: web.Request, job_id: int, wait_s: float) -> dict | None:
    """The job's result once a worker has stored it (waiting up to ``wait_s``), or None."""
    owner = f"web:{current_user(request).id}"
    deadline = asyncio.get_running_loop().time() + wait_s
    pause = 0.1
    while True:
        async with web_ctx(request).session() as db:
            row = (await db.exec(select(Job.status, Job.result, Job.name).where(
                Job.id == job_id, Job.owner == owner))).first()
        if row is None:
            return {"status": 404, "error": "没有这个识别任务 / No such upload."}
        status, result, _name = row
        if status == "done":
            return result or {"status": 503, "error": UNAVAILABLE}
        if status == "failed":
            return {"status": 503, "error": UNAVAILABLE}
        if asyncio.get_running_loop().time() >= deadline:
            return None
        await asyncio.sleep(pause)
        pause = min(pause * 1.5, 0.5)


def _pending(job_id: int) -> web.Response:
    return web.json_response({"pending": True, "job": job_id,
                              "poll": f"/app/visits/media/{job_id}",
                              "message": "排队识别中… / Queued for recognition…"}, status=202)


async def _photo_answer(request: web.Request, ref: str, res: dict) -> web.Response:
    user = current_user(request)
    async with web_ctx(request).session() as db:
        shown, others = await _visible_candidates(db, user, res.get("candidates") or [])
        audit(db, user, "media.ocr", "photo", ref, engine=res.get("engine"),
              seconds=res.get("seconds"), name=(res.get("name") or "")[:60],
              candidates=[c["customer_id"] for c in shown[:3]])
        await db.commit()
    return web.json_response({
        "text": res.get("text", ""), "name": res.get("name", ""), "candidates": shown,
        "others": others, "ambiguous": bool(res.get("ambiguous")), "photo_ref": ref,
        "gps": res.get("gps")})


async def _voice_answer(request: web.Request, ref: str, res: dict) -> web.Response:
    user = current_user(request)
    async with web_ctx(request).session() as db:
        shown, others = await _visible_candidates(db, user, res.get("candidates") or [])
        audit(db, user, "media.transcribed", "voice", ref, engine=res.get("engine"),
              seconds=res.get("seconds"), audio_seconds=res.get("audio_seconds"),
              candidates=[c["customer_id"] for c in shown[:3]])
        await db.commit()
    text = res.get("text", "")
    follow = next_step_date(text, local_today())
    return web.json_response({
        "text": text, "language": res.get("language"), "candidates": shown, "others": others,
        "follow_up_on": follow.isoformat() if follow else None, "audio_ref": ref})


ANSWERS = {"web.photo": _photo_answer, "web.voice": _voice_answer}


async def _answer(request: web.Request, job: str, job_id: int, ref: str,
                  wait_s: float) -> web.Response:
    res = await _outcome(request, job_id, wait_s)
    if res is None:
        return _pending(job_id)
    if res.get("status", 200) != 200:
        return _json_error(int(res.get("status", 503)), res.get("error") or UNAVAILABLE)
    return await ANSWERS[job](request, ref, res)


def _photo_ext(_filename: str) -> str:
    return ".jpg"


def _voice_ext(filename: str) -> str:
    return VOICE_EXT.get(filename.rsplit(".", 1)[-1].lower() if "." in filename else "", "")


@routes.post("/app/visits/photo")
@require()
async def photo_upload(request: web.Request) -> web.StreamResponse:
    queued = await _queue(request, "photo", "web.photo", _photo_ext)
    if isinstance(queued, web.Response):
        return queued
    return await _answer(request, "web.photo", *queued, WAIT_S)


@routes.post("/app/visits/voice")
@require()
async def voice_upload(request: web.Request) -> web.StreamResponse:
    queued = await _queue(request, "audio", "web.voice", _voice_ext)
    if isinstance(queued, web.Response):
        return queued
    return await _answer(request, "web.voice", *queued, WAIT_S)


@routes.get("/app/visits/media/{job_id:\\d+}")
@require()
async def media_result(request: web.Request) -> web.StreamResponse:
    """The page's poll for an upload still queued when its request answered 202."""
    job_id = int(request.match_info["job_id"])
    async with web_ctx(request).session() as db:
        row = (await db.exec(select(Job.name, Job.args).where(
            Job.id == job_id, Job.owner == f"web:{current_user(request).id}"))).first()
    if row is None or row[0] not in ANSWERS:
        return _json_error(404, "没有这个识别任务 / No such upload.")
    return await _answer(request, row[0], job_id, str((row[1] or {}).get("ref", "")),
                         POLL_WAIT_S)


# -- the form --------------------------------------------------------------------------------
async def _my_customers(db: Any, user: User) -> list[Customer]:
    scope = await visible_user_ids(db, user)
    q = select(Customer).order_by(Customer.last_activity_at.desc(), Customer.id).limit(500)
    return list((await db.exec(scoped(q, Customer.owner_id, scope))).all())


async def _form(request: web.Request, values: dict[str, Any], errors: list[str],
                status: int = 200) -> web.Response:
    async with web_ctx(request).session() as db:
        customers = await _my_customers(db, current_user(request))
    return render(request, "rep_visit_form.html", status=status, customers=customers,
                  v=values, errors=errors, today=local_today().isoformat())


FIELDS = ("customer_id", "customer_name", "new_customer", "new_name", "note", "follow_up_on",
          "photo_ref", "ocr_text", "transcript", "audio_ref", "draft")


@routes.get("/app/visits/new")
@require()
async def visit_form(request: web.Request) -> web.StreamResponse:
    values = dict.fromkeys(FIELDS, "")
    values["draft"] = secrets.token_hex(8)  # a second submit of the same form saves once
    pre = small_int(request.query.get("customer_id"))
    if pre:  # "new visit" from a customer's page
        user = current_user(request)
        async with web_ctx(request).session() as db:
            customer = await db.get(Customer, pre)
            if customer and may_see(await visible_user_ids(db, user), customer.owner_id):
                values.update(customer_id=str(customer.id), customer_name=customer.name)
    return await _form(request, values, [])


async def _resolve_customer(db: Any, user: User, v: dict[str, str], errors: list[str]
                            ) -> Customer | None:
    """The chosen customer (by id, else by the typed name), or a new one when asked."""
    scope = await visible_user_ids(db, user)
    if v["customer_id"]:
        cid = small_int(v["customer_id"])
        customer = await db.get(Customer, cid) if cid else None
        if customer is None or not may_see(scope, customer.owner_id):
            errors.append("客户不存在或不是你的客户 / Unknown customer.")
            return None
        return customer
    name = v["customer_name"].strip()
    if name:
        q = select(Customer).where(or_(Customer.name == name, Customer.short_name == name))
        found = [c for c in (await db.exec(q)).all() if may_see(scope, c.owner_id)]
        if len(found) == 1:
            return found[0]
        cands = [c for c in await match_customers(db, name, user.id)]
        owners = {c.id: c.owner_id for c in (await db.exec(select(Customer).where(
            Customer.id.in_([c.customer_id for c in cands])))).all()} if cands else {}
        mine = [c for c in cands if may_see(scope, owners.get(c.customer_id))]
        if mine and not is_ambiguous(mine):
            return await db.get(Customer, mine[0].customer_id)
    if v["new_customer"] and v["new_name"].strip():
        new_name = v["new_name"].strip()[:100]
        same = (await db.exec(select(Customer).where(Customer.name == new_name))).all()
        if any(may_see(scope, c.owner_id) for c in same):
            errors.append(f"客户“{new_name}”已存在 / That customer already exists.")
            return None
        # one outside the rep's scope is not mentioned (that would reveal another team's
        # customer): the new one is made, and the audit row tells an admin to merge
        customer = Customer(name=new_name, owner_id=user.id, region="")
        db.add(customer)
        await db.flush()
        audit(db, user, "customer.create", "customer", customer.id, source="web_visit",
              name=new_name, **({"possible_duplicate_of": [c.id for c in same]} if same else {}))
        return customer
    errors.append("请选择客户 / Choose the customer." if not name else
                  f"找不到客户“{name}” / No customer “{name}”: pick one from the list.")
    return None


@routes.post("/app/visits")
@require()
async def visit_save(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    form = await request.post()
    v = {k: str(form.get(k, "") or "").strip() for k in FIELDS}
    v["note"] = v["note"][:MAX_NOTE]
    v["transcript"] = v["transcript"][:MAX_NOTE]
    errors: list[str] = []
    when: date | None = None
    if v["follow_up_on"]:
        try:
            when = date.fromisoformat(v["follow_up_on"])
        except ValueError:
            errors.append("跟进日期格式应为 YYYY-MM-DD / The follow-up date is not a date.")
        else:
            if when < local_today():
                errors.append("跟进日期不能早于今天 / The follow-up date is in the past.")
    for ref in ("photo_ref", "audio_ref"):
        if v[ref] and not SHA.match(v[ref]):
            errors.append("附件无效，请重新上传 / The attachment is invalid: upload it again.")
            v[ref] = ""
    if not (v["note"] or v["photo_ref"] or v["transcript"]):
        errors.append("请填写拜访记录，或拍照/录音 / Write a note, or add a photo or voice.")
    now = datetime.now(UTC)
    async with web_ctx(request).session() as db:
        customer = await _resolve_customer(db, user, v, errors)
        if errors or customer is None:
            await db.rollback()
            return await _form(request, v, errors, status=400)
        customer = await lock_customer(db, customer.id) or customer
        draft = f"web-form:{v['draft'][:32]}" if v["draft"] else ""
        if await already_saved(db, customer.id, draft, now - timedelta(days=1)):
            raise web.HTTPFound("/app/visits?saved=dup")
        evidence: dict[str, Any] = {"draft": draft} if draft else {}
        if v["photo_ref"]:
            evidence.update(photo_sha256=v["photo_ref"], ocr_text=v["ocr_text"][:30])
        if v["transcript"]:
            evidence["transcript"] = v["transcript"]
        if v["audio_ref"]:
            evidence["audio_sha256"] = v["audio_ref"]
        source = "photo" if v["photo_ref"] else ("voice" if v["transcript"] else "manual")
        summary = v["note"] or (v["transcript"] if v["transcript"] else
                                f"门头照片签到：{v['ocr_text'] or customer.name}")
        visit, deal = await write_visit(db, customer, user_id=user.id, source=source,
                                        summary=summary, evidence=evidence, now=now,
                                        follow_up_on=when)
        audit(db, user, "visit.create", "visit", visit.id, **visit_audit_detail(visit, deal))
        await db.commit()
    raise web.HTTPFound("/app/visits?saved=1")
