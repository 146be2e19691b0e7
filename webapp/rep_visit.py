"""The visit form: customer (search with suggestions), note, follow-up date, a photo of the
sign (→ OCR → customer suggestion) and a voice note (→ transcript → note and date).

The photo and the voice note are posted on their own (``/app/visits/photo``, ``/voice``) while
the rep keeps typing; they answer JSON and the form keeps the stored file's hash. The media
work is the chat's: ``MediaServices`` (EXIF rotation, downscale, pixel cap and bomb checks,
ffmpeg decoding, hot words, Traditional → Simplified) and the same customer matcher; bad input
is a 4xx with a message the page shows (``MediaError.user_message``), never a 500.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlmodel import or_, select

from bot.matching import Candidate, is_ambiguous
from bot.platform import MediaError
from handlers.media import AUDIO_EXT, hot_words_for, next_step_date
from handlers.visits import (
    already_saved,
    lock_customer,
    match_customers,
    visit_audit_detail,
    write_visit,
)
from storage.models import Customer, User
from webapp.auth import require
from webapp.core import current_user, web_ctx
from webapp.render import render
from webapp.rep import audit, local_today, scoped, small_int
from webapp.scope import may_see, visible_user_ids

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

SHA = re.compile(r"^[0-9a-f]{64}$")
MAX_NOTE = 2000
NO_FILE = "请选择一个文件 / Choose a file first."
TOO_BIG = "文件过大 / The file is too large."
UNAVAILABLE = "识别服务暂不可用，请稍后重试 / Recognition is unavailable right now."
# a browser's MediaRecorder sends WebM (Chromium, Firefox) besides what the chat platforms send
VOICE_EXT = {**AUDIO_EXT, "webm": ".webm"}


def _json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _upload(request: web.Request, field: str) -> bytes | web.Response:
    """The bytes of the multipart file ``field``, or a JSON error response."""
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        return _json_error(413, TOO_BIG)
    except ValueError:
        return _json_error(400, NO_FILE)
    f = form.get(field)
    if not isinstance(f, web.FileField):
        return _json_error(400, NO_FILE)
    data = f.file.read()
    if not data:
        return _json_error(400, NO_FILE)
    return data


async def _visible_candidates(db: Any, user: User, cands: list[Candidate]
                              ) -> tuple[list[dict[str, Any]], int]:
    """The candidates this user may file a visit for, and how many others matched (another
    team's customers are never named to a rep)."""
    if not cands:
        return [], 0
    scope = await visible_user_ids(db, user)
    owners = dict((await db.exec(select(Customer.id, Customer.owner_id).where(
        Customer.id.in_([c.customer_id for c in cands])))).all())
    mine = [c for c in cands if may_see(scope, owners.get(c.customer_id))]
    return ([{"customer_id": c.customer_id, "name": c.name, "score": round(c.score, 3)}
             for c in mine], len(cands) - len(mine))


def _media(request: web.Request) -> Any:
    svc = web_ctx(request).services.get("media")
    if svc is None:
        raise web.HTTPServiceUnavailable(text=json.dumps({"error": UNAVAILABLE}),
                                         content_type="application/json")
    return svc


async def _recognised(request: web.Request, field: str,
                      work: Callable[[Any, bytes], Awaitable[Any]]) -> Any:
    """``work(media services, the bytes of upload field)`` — recognise, then store the file —
    or the JSON error the page shows (a ``web.Response``) for what can go wrong on the way:
    no file, no media service, an engine refusing the file, the store's cap, a crash."""
    data = await _upload(request, field)
    if isinstance(data, web.Response):
        return data
    svc = _media(request)
    try:
        return await work(svc, data)
    except MediaError as exc:
        return _json_error(422, getattr(exc, "user_message", "") or UNAVAILABLE)
    except ValueError:  # the file store's per-file cap
        return _json_error(413, TOO_BIG)
    except Exception:  # an engine crash is ours, not the rep's: say so, keep the page alive
        log.exception("media engine failed on an upload")
        return _json_error(503, UNAVAILABLE)


async def _ocr(svc: Any, data: bytes) -> tuple[Any, str]:
    return await svc.ocr(data), await svc.store(data, ".jpg")


@routes.post("/app/visits/photo")
@require()
async def photo_upload(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    done = await _recognised(request, "photo", _ocr)
    if isinstance(done, web.Response):
        return done
    res, photo_ref = done
    name, text = res.name, res.text
    async with web_ctx(request).session() as db:
        cands = await match_customers(db, name, user.id) if name else []
        if not cands and text.strip():
            cands = await match_customers(db, text, user.id)
        shown, others = await _visible_candidates(db, user, cands)
        audit(db, user, "media.ocr", "photo", photo_ref, engine=res.engine,
              seconds=round(res.seconds, 2), name=name[:60],
              candidates=[c["customer_id"] for c in shown[:3]])
        await db.commit()
    gps = res.photo.gps if res.photo and res.photo.gps else None
    return web.json_response({
        "text": text, "name": name, "candidates": shown, "others": others,
        "ambiguous": is_ambiguous(cands), "photo_ref": photo_ref,
        "gps": list(gps) if gps else None})


@routes.post("/app/visits/voice")
@require()
async def voice_upload(request: web.Request) -> web.StreamResponse:
    user = current_user(request)
    ctx = web_ctx(request)
    async with ctx.session() as db:  # the rep's customer names help the recogniser
        words = await hot_words_for(db, user.id)

    async def transcribe(svc: Any, data: bytes) -> tuple[Any, str]:
        tr = await svc.transcribe(data, words)
        return tr, await svc.store(data, VOICE_EXT.get(tr.container or "", ""))

    done = await _recognised(request, "audio", transcribe)
    if isinstance(done, web.Response):
        return done
    tr, audio_ref = done
    text = tr.text.strip()
    if not text:
        return _json_error(422, "没有听清这段语音，请再说一遍。/ I heard no speech; please retry.")
    async with ctx.session() as db:
        shown, others = await _visible_candidates(db, user,
                                                  await match_customers(db, text, user.id))
        audit(db, user, "media.transcribed", "voice", audio_ref, engine=tr.engine,
              seconds=round(tr.seconds, 2), audio_seconds=round(tr.audio_seconds, 1),
              candidates=[c["customer_id"] for c in shown[:3]])
        await db.commit()
    follow = next_step_date(text, local_today())
    return web.json_response({
        "text": text, "language": tr.language, "candidates": shown, "others": others,
        "follow_up_on": follow.isoformat() if follow else None, "audio_ref": audio_ref})


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
