"""The offline-first capture page (issue 16): the page, its service worker and manifest, the
rep's own customers as JSON (cached by the worker for offline use), and the sync endpoint that
files each queued visit exactly once, whatever the retries.

``POST /app/api/capture`` (multipart, ``X-CSRF-Token`` header): ``key`` (the page's
``crypto.randomUUID()``), ``customer_id`` and ``customer_name`` (as the page knew them
offline), ``user_id`` (who composed it), ``text``, ``lat``/``lng``/``accuracy``/``coord_system``,
``photo`` and ``audio`` files (``audio_seconds``: the recording's length). The body is read part
by part straight to temporary files (the session middleware's small form cap applies to
``request.post()``, not to this streaming read); each file has its own cap. Media is stored
here and its OCR / transcription is queued as durable jobs in the visit's transaction — no
recognition engine runs in the web process. Per-item problems are a 4xx JSON
``{"error", "code"}`` the page shows on that item; the rest of the queue syncs.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlmodel import or_, select

from handlers.visits import lock_customer, visit_audit_detail, write_visit
from sales.checkin import DEFAULT_RADIUS_M, SYSTEMS, WGS84, valid
from sales.location_checkin import checkin_of
from storage.models import Customer, CustomerAlias, Job, User, Visit
from webapp.auth import require
from webapp.core import SESSION_KEY, current_user, web_ctx
from webapp.render import render
from webapp.rep import audit, scoped
from webapp.rep_visit import VOICE_EXT
from webapp.scope import may_see, visible_user_ids
from webapp.session import csrf_token

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

STATIC = Path(__file__).parent / "static"
KEY = re.compile(r"^[0-9a-fA-F-]{8,64}$")
MAX_TEXT = 2000
MAX_FIELD = 8 * 1024  # a text part
MAX_AUDIO_S = 10 * 60  # a voice note is a note: 10 minutes at most
DRAIN_LIMIT = 128 * 1024 * 1024  # past this an oversize upload is cut off, not read
CHUNK = 256 * 1024
FILES = {"photo": ".jpg", "audio": ""}
# the mini-app's recognition jobs (``jobs/media_uploads``: OCR / speech-to-text in a worker,
# the result stored on the job row); each capture item queues its own under its key
UPLOAD_JOB = {"photo": "web.photo", "audio": "web.voice"}
MIME_EXT = {"audio/webm": ".webm", "audio/ogg": ".ogg", "audio/mp4": ".m4a",
            "audio/aac": ".aac", "audio/mpeg": ".mp3", "audio/wav": ".wav"}


def _err(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": message, "code": code}, status=status)


def radius_m(settings: Any) -> float:
    return float(getattr(settings, "checkin_radius_m", DEFAULT_RADIUS_M) or DEFAULT_RADIUS_M)


# -- the page and what makes it work offline ---------------------------------------------------
@routes.get("/app/capture")
@require()
async def capture_page(request: web.Request) -> web.StreamResponse:
    return render(request, "rep_capture.html", radius=int(radius_m(web_ctx(request).settings)))


@routes.get("/app/capture-sw.js")
async def service_worker(request: web.Request) -> web.StreamResponse:
    """The worker sits at /app/ so that its scope may cover /app/capture; it registers with
    that narrower scope and leaves every other page alone."""
    return web.Response(body=(STATIC / "capture-sw.js").read_bytes(),
                        content_type="application/javascript",
                        headers={"Service-Worker-Allowed": "/app/", "Cache-Control": "no-cache"})


@routes.get("/app/capture.webmanifest")
async def manifest(request: web.Request) -> web.StreamResponse:
    return web.Response(body=(STATIC / "capture.webmanifest").read_bytes(),
                        content_type="application/manifest+json")


@routes.get("/app/api/capture/customers")
@require()
async def my_customers(request: web.Request) -> web.StreamResponse:
    """The signed-in rep's own customers (name, aliases, address, last visit) and a fresh
    CSRF token (a cached page's token dies with its session)."""
    user = current_user(request)
    ctx = web_ctx(request)
    async with ctx.session() as db:
        scope = await visible_user_ids(db, user)
        q = select(Customer).order_by(Customer.last_activity_at.desc(), Customer.id).limit(2000)
        rows = list((await db.exec(scoped(q, Customer.owner_id, scope))).all())
        ids = [c.id for c in rows]
        aliases: dict[int, list[str]] = {}
        if ids:
            for cid, alias in (await db.exec(select(CustomerAlias.customer_id, CustomerAlias.alias)
                                             .where(CustomerAlias.customer_id.in_(ids)))).all():
                aliases.setdefault(cid, []).append(alias)
    sess = request.get(SESSION_KEY)
    return web.json_response({
        "user_id": user.id, "user_name": user.name, "radius_m": radius_m(ctx.settings),
        "csrf": csrf_token(ctx.secret, sess.nonce) if sess else "",
        "customers": [{"id": c.id, "name": c.name, "short_name": c.short_name,
                       "aliases": aliases.get(c.id, []),
                       "address": c.address or c.region or "",
                       "last_visit": c.last_activity_at.isoformat() if c.last_activity_at
                       else None} for c in rows]})


# -- reading the upload ----------------------------------------------------------------------
@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[Path, int, str]] = field(default_factory=dict)  # path, size, mime
    too_big: set[str] = field(default_factory=set)


async def read_upload(request: web.Request, cap: int, tmp: Path) -> Upload | web.Response:
    """The multipart body, file parts streamed to ``tmp`` (each capped at ``cap``); a text-only
    item may come as a plain form."""
    if request.content_type == "application/x-www-form-urlencoded":
        form = await request.post()
        return Upload(fields={k: str(v)[:MAX_FIELD] for k, v in form.items()})
    try:
        reader = await request.multipart()
    except (AssertionError, ValueError, KeyError):
        return _err(400, "bad_request", "请求无效 / Not a multipart upload.")
    up = Upload()
    total = 0
    while True:
        part = await reader.next()
        if part is None:
            return up
        name = part.name or ""
        if part.filename is None:
            value = await part.read(decode=True)
            up.fields[name] = value[:MAX_FIELD].decode("utf-8", "replace")
            continue
        if name not in FILES or name in up.files:
            await part.release()
            continue
        path, size = tmp / name, 0
        with path.open("wb") as out:
            while chunk := await part.read_chunk(CHUNK):
                size += len(chunk)
                total += len(chunk)
                if total > DRAIN_LIMIT:
                    return _err(413, "too_large", "文件过大 / The file is too large.")
                if size <= cap:
                    out.write(chunk)
        if size > cap:
            up.too_big.add(name)
            path.unlink(missing_ok=True)
        elif size:
            up.files[name] = (path, size, part.headers.get("Content-Type", ""))


def _float(value: str | None) -> float | None:
    try:
        f = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return f if f is not None and math.isfinite(f) else None


# -- filing one item -------------------------------------------------------------------------
async def _customer(db: Any, user: User, cid: int | None, seen_name: str
                    ) -> tuple[Customer | None, str, web.Response | None]:
    """(the current record to file against, a notice for the page, or the item's error)."""
    scope = await visible_user_ids(db, user)
    customer = await db.get(Customer, cid) if cid else None
    if customer is not None and not may_see(scope, customer.owner_id):
        return None, "", _err(403, "not_your_customer",
                              "这不是你的客户 / This customer is not yours.")
    if customer is None and seen_name:  # gone (merged into another record) or never had one
        q = (select(Customer).join(CustomerAlias, CustomerAlias.customer_id == Customer.id,
                                   isouter=True)
             .where(or_(Customer.name == seen_name, Customer.short_name == seen_name,
                        CustomerAlias.alias == seen_name)))
        found = {c.id: c for c in (await db.exec(q)).all() if may_see(scope, c.owner_id)}
        if len(found) == 1:
            customer = next(iter(found.values()))
            if cid:
                return customer, (f"客户“{seen_name}”已合并到“{customer.name}”，已记在当前客户下"
                                  f" / The customer was merged into {customer.name}; filed "
                                  f"there."), None
            return customer, "", None
    if customer is None:
        return None, "", _err(404, "no_customer", "客户已不存在，请重新选择 / That customer no "
                                                  "longer exists: pick it again.")
    if seen_name and seen_name not in (customer.name, customer.short_name):
        return customer, (f"客户已改名为“{customer.name}”，已记在当前客户下 / The customer "
                          f"was renamed to {customer.name}; filed there."), None
    return customer, "", None


def _checkin(visit: Visit, customer: Customer | None, radius: float) -> dict[str, Any] | None:
    if visit.lat is None or visit.lng is None:
        return None
    if customer is None or customer.lat is None or customer.lng is None:
        return {"label": "客户还没有坐标 / The customer has no position yet", "far": False,
                "distance_m": None}
    ci = checkin_of(visit, customer, radius)
    return {"distance_m": round(ci.distance_m, 1), "far": ci.far, "label": ci.label,
            "radius_m": radius}


async def _answer(db: Any, visit: Visit, status: str, notice: str, radius: float) -> web.Response:
    customer = await db.get(Customer, visit.customer_id) if visit.customer_id else None
    jobs = (await db.exec(select(Job.name).where(Job.idem_key.like(
        f"capture:{visit.client_key}:%")))).all()
    return web.json_response({
        "status": status, "visit_id": visit.id, "notice": notice,
        "customer": {"id": customer.id, "name": customer.name} if customer else None,
        "checkin": _checkin(visit, customer, radius), "queued": sorted(jobs)})


def _audio_ext(mime: str, fallback: str) -> str:
    base = mime.split(";")[0].strip().lower()
    return MIME_EXT.get(base) or VOICE_EXT.get(fallback.lstrip("."), "") or ".webm"


@routes.post("/app/api/capture")
@require()
async def capture_sync(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    ctx = web_ctx(request)
    cap = ctx.settings.web_max_upload_bytes
    with tempfile.TemporaryDirectory(prefix="capture-") as tmp:
        up = await read_upload(request, cap, Path(tmp))
        if isinstance(up, web.Response):
            return up
        return await _file(request, ctx, user, up, cap)


async def _file(request: web.Request, ctx: Any, user: User, up: Upload, cap: int
                ) -> web.Response:
    f = up.fields
    key = f.get("key", "").strip()
    if not KEY.match(key):
        return _err(400, "bad_key", "记录编号无效 / The item has no valid key.")
    if f.get("user_id", "").strip() and f["user_id"].strip() != str(user.id):
        log.warning("capture item %s claims user %r, session is user %s", key, f["user_id"],
                    user.id)
        return _err(403, "forged_user", "这条记录不是当前登录用户的 / This item belongs to "
                                        "another user.")
    if up.too_big:
        return _err(413, "too_large", f"文件过大（上限 {cap // (1024 * 1024)} MB）/ The "
                                      f"{'photo' if 'photo' in up.too_big else 'recording'} "
                                      f"is larger than {cap // (1024 * 1024)} MB.")
    seconds = _float(f.get("audio_seconds"))
    if "audio" in up.files and seconds is not None and seconds > MAX_AUDIO_S:
        return _err(413, "too_long", f"录音太长（上限 {MAX_AUDIO_S // 60} 分钟）/ The recording "
                                     f"is longer than {MAX_AUDIO_S // 60} minutes.")
    text = f.get("text", "").strip()[:MAX_TEXT]
    if not (text or up.files):
        return _err(400, "empty", "请填写记录，或拍照/录音 / Write a note, or add a photo or "
                                  "voice.")
    lat, lng, acc = _float(f.get("lat")), _float(f.get("lng")), _float(f.get("accuracy"))
    system = f.get("coord_system", WGS84).strip().lower() or WGS84
    if lat is not None and lng is not None and (not valid(lat, lng) or system not in SYSTEMS):
        return _err(400, "bad_position", "位置无效 / The position is not valid.")
    cid_text = f.get("customer_id", "").strip()
    cid = int(cid_text) if cid_text.isdigit() and len(cid_text) <= 12 else None
    radius = radius_m(ctx.settings)
    async with ctx.session() as db:
        done = (await db.exec(select(Visit).where(Visit.client_key == key))).first()
        if done is not None:
            return await _duplicate(db, done, user, radius)
        customer, notice, refused = await _customer(db, user, cid,
                                                    f.get("customer_name", "").strip()[:100])
        if refused is not None:
            return refused
    svc = ctx.services.get("media")
    if up.files and svc is None:
        return _err(503, "unavailable", "暂时无法接收附件，请稍后重试 / Attachments cannot be "
                                        "received right now; retrying later.")
    refs: dict[str, str] = {}
    for name, (path, _size, mime) in up.files.items():
        ext = ".jpg" if name == "photo" else _audio_ext(mime, "")
        try:
            refs[name] = await _store(svc, path, ext)
        except ValueError:  # the file store's own cap
            return _err(413, "too_large", "文件过大 / The file is too large.")
    return await _write(request, ctx, user, key, customer.id, notice, text, refs,
                        (lat, lng, acc, system), seconds, radius)


async def _store(svc: Any, path: Path, ext: str) -> str:
    """Copy the spooled part into the media file store (streamed, never whole in memory)."""
    files = getattr(svc, "files", None)
    if files is not None and hasattr(files, "put_stream"):
        with path.open("rb") as src:
            return await asyncio.to_thread(files.put_stream, src, ext)
    return await svc.store(path.read_bytes(), ext)


async def _duplicate(db: Any, done: Visit, user: User, radius: float) -> web.Response:
    if done.user_id != user.id:
        return _err(409, "key_taken", "记录编号冲突 / That key belongs to another visit.")
    # the answer the first try would have had, conflict notice included
    return await _answer(db, done, "duplicate", (done.evidence or {}).get("notice", ""), radius)


async def _raced(db: Any, key: str, user: User, radius: float) -> web.Response:
    """The same key was filed on another connection meanwhile: answer as a retry."""
    await db.rollback()
    done = (await db.exec(select(Visit).where(Visit.client_key == key))).first()
    if done is None:
        raise web.HTTPServiceUnavailable(text='{"error": "请重试 / Please retry."}',
                                         content_type="application/json")
    return await _duplicate(db, done, user, radius)


async def _write(request: web.Request, ctx: Any, user: User, key: str, cid: int, notice: str,
                 text: str, refs: dict[str, str], pos: tuple, seconds: float | None,
                 radius: float) -> web.Response:
    lat, lng, acc, system = pos
    now = datetime.now(UTC)
    async with ctx.session() as db:
        customer = await lock_customer(db, cid)
        if customer is None:
            return _err(404, "no_customer", "客户已不存在 / That customer no longer exists.")
        evidence: dict[str, Any] = {"client_key": key}
        if "photo" in refs:
            evidence["photo_sha256"] = refs["photo"]
        if "audio" in refs:
            evidence["audio_sha256"] = refs["audio"]
            if seconds is not None:
                evidence["audio_seconds"] = round(seconds, 1)
        if notice:
            evidence["notice"] = notice
        source = "photo" if "photo" in refs else ("voice" if "audio" in refs else "manual")
        summary = text or ("门头照片签到 / Photo check-in" if "photo" in refs
                           else "语音记录（转写中）/ Voice note (transcribing)")
        visit, deal = await write_visit(db, customer, user_id=user.id, source=source,
                                        summary=summary, evidence=evidence, now=now)
        visit.client_key = key
        if lat is not None and lng is not None:
            visit.lat, visit.lng, visit.accuracy_m, visit.coord_system = lat, lng, acc, system
        db.add(visit)
        try:
            await db.flush()  # the unique key: a racing twin stops here (or at the commit)
        except IntegrityError:
            return await _raced(db, key, user, radius)
        for kind, ref in refs.items():  # the recognisers run in the job worker
            job = UPLOAD_JOB[kind]
            db.add(Job(idem_key=f"capture:{key}:{kind}", name=job, owner=f"web:{user.id}",
                       args={"visit_id": visit.id, "ref": ref, "user_id": user.id},
                       next_at=now))
        detail = visit_audit_detail(visit, deal)
        audit(db, user, "visit.create", "visit", visit.id, page="capture", client_key=key,
              **({"notice": notice} if notice else {}),
              **({"lat": lat, "lng": lng, "accuracy_m": acc, "coord_system": system}
                 if lat is not None and lng is not None else {}),
              **detail)
        try:
            await db.commit()
        except IntegrityError:
            return await _raced(db, key, user, radius)
        ctx.wake()
        return await _answer(db, visit, "filed", notice, radius)
