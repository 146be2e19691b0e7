"""One-tap sync on a page: the rep's recent chats that mention a customer → tick messages →
save as a visit. The same semantics as the chat's ``sync`` + 保存 (``handlers.visits``): the
same buffer, the same matcher and ranking, the same evidence, deal link, last-activity stamps,
follow-up task and ``visit.create`` audit row.

Which chats are the rep's: the buffered chats (last ``chat_buffer_days`` days) in which one of
the rep's identities (platform, app, external id) sent a message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlmodel import select

from bot.matching import Candidate, is_ambiguous
from handlers.media import next_step_date
from handlers.visits import (
    MAX_CANDIDATES,
    SCAN_LIMIT,
    SYNC_MESSAGES,
    aggregate,
    already_saved,
    is_command,
    lock_customer,
    match_customers,
    matcher_cache_for,
    message_evidence,
    messages_summary,
    sender_names,
    visit_audit_detail,
    write_visit,
)
from storage import chat_buffer
from storage.models import Chat, ChatMessage, Identity, User
from webapp.auth import require
from webapp.core import current_user, web_ctx
from webapp.render import render
from webapp.rep import audit, local_today, small_int

routes = web.RouteTableDef()

SHOW_MESSAGES = 6  # per chat: the newest few that name a customer (the newest 3 are ticked)
MAX_CHATS = 20
PLATFORM_LABEL = {"wecom": "企业微信", "dingtalk": "钉钉", "feishu": "飞书"}
ChatKey = tuple[str, str, str]  # (platform, app_id, chat_id)


async def rep_chats(db: Any, user: User, since: datetime) -> list[ChatKey]:
    """The chats in which one of ``user``'s identities spoke since ``since``, newest first."""
    idents = (await db.exec(select(Identity).where(Identity.user_id == user.id))).all()
    found: dict[ChatKey, datetime] = {}
    for ident in idents:
        q = (select(ChatMessage.chat_id, ChatMessage.sent_at)
             .where(ChatMessage.platform == ident.platform,
                    ChatMessage.app_id == ident.app_id,
                    ChatMessage.sender == ident.external_id, ChatMessage.sent_at >= since)
             .order_by(ChatMessage.sent_at.desc()).limit(500))
        for chat_id, at in (await db.exec(q)).all():
            key = (ident.platform, ident.app_id, chat_id)
            if key not in found or at > found[key]:
                found[key] = at
    return sorted(found, key=lambda k: found[k], reverse=True)[:MAX_CHATS]


async def mentions(db: Any, user: User, key: ChatKey, since: datetime, matcher: Any
                   ) -> list[tuple[ChatMessage, list[Candidate]]]:
    """The chat's newest messages that name a customer (newest first), as the chat's sync
    reads them."""
    platform, app_id, chat_id = key
    rows = await chat_buffer.recent(db, platform=platform, app_id=app_id, chat_id=chat_id,
                                    since=since, limit=SCAN_LIMIT)
    out: list[tuple[ChatMessage, list[Candidate]]] = []
    for row in rows:
        if is_command(row.text):
            continue
        cands = matcher.find(row.text.strip(), owner_id=user.id)
        if cands:
            out.append((row, cands))
            if len(out) == SHOW_MESSAGES:
                break
    return out


def follow_up_of(picked: Sequence[tuple[ChatMessage, list[Candidate]]], today: date
                 ) -> date | None:
    """The suggested follow-up: the first date after today that the newest message names
    ("今天拜访了…，明天再确认" → tomorrow; the voice note's rule, ``next_step_date``)."""
    for row, _ in picked:  # newest first
        found = next_step_date(row.text, today)
        if found:
            return found
    return None


async def chat_title(db: Any, key: ChatKey, user_ids: set[str]) -> str:
    platform, app_id, chat_id = key
    chat = (await db.exec(select(Chat).where(Chat.platform == platform, Chat.app_id == app_id,
                                             Chat.external_id == chat_id))).first()
    label = PLATFORM_LABEL.get(platform, platform)
    if chat is not None and chat.title:
        return f"{label} · {chat.title}"
    if chat_id in user_ids or (chat is not None and chat.type == "p2p"):
        return f"{label} · 与机器人的单聊 / direct chat"
    return f"{label} · 群聊 {chat_id}"


async def build_chats(db: Any, user: User, settings: Any) -> list[dict[str, Any]]:
    since = datetime.now(UTC) - timedelta(days=settings.chat_buffer_days)
    today = local_today()
    own = {i.external_id for i in (await db.exec(
        select(Identity).where(Identity.user_id == user.id))).all()}
    chats = []
    matcher = await matcher_cache_for(db.bind).get(db)  # one fingerprint check per page
    for key in await rep_chats(db, user, since):
        picked = await mentions(db, user, key, since, matcher)
        if not picked:
            continue
        ranked = aggregate([c for row, cands in picked[:SYNC_MESSAGES] for c in cands])
        every = aggregate([c for row, cands in picked for c in cands])
        names = await sender_names(db, [row for row, _ in picked], key[0], key[1])
        msgs = [{"row": row, "name": names.get(row.sender, row.sender),
                 "checked": i < SYNC_MESSAGES, "mine": row.sender in own,
                 "customers": ", ".join(c.name for c in cands[:3])}
                for i, (row, cands) in enumerate(picked)]
        msgs.reverse()  # oldest first, as on the chat's card
        choices = every[:MAX_CANDIDATES]
        chats.append({"key": key, "title": await chat_title(db, key, own), "messages": msgs,
                      "candidates": choices, "ambiguous": is_ambiguous(ranked) or
                      len(choices) > 1, "best": ranked[0] if ranked else choices[0],
                      "follow_up_on": follow_up_of(picked[:SYNC_MESSAGES], today)})
    return chats


@routes.get("/app/sync")
@require()
async def sync_page(request: web.Request) -> web.StreamResponse:
    ctx = web_ctx(request)
    async with ctx.session() as db:
        chats = await build_chats(db, current_user(request), ctx.settings)
    return render(request, "rep_sync.html", chats=chats, days=ctx.settings.chat_buffer_days)


async def _sync_error(request: web.Request, message: str) -> web.Response:
    ctx = web_ctx(request)
    async with ctx.session() as db:
        chats = await build_chats(db, current_user(request), ctx.settings)
    return render(request, "rep_sync.html", status=400, chats=chats, flash=message,
                  flash_kind="error", days=ctx.settings.chat_buffer_days)


def _date(value: str) -> tuple[date | None, bool]:
    """(date, ok): an empty value is no date; anything else must be YYYY-MM-DD."""
    value = (value or "").strip()
    if not value:
        return None, True
    try:
        return date.fromisoformat(value[:10]), len(value) == 10
    except ValueError:
        return None, False


@routes.post("/app/sync")
@require()
async def sync_save(request: web.Request) -> web.StreamResponse:
    """Save the ticked messages of one chat as a visit (the chat's 保存, from a page)."""
    user = current_user(request)
    ctx = web_ctx(request)
    form = await request.post()
    key: ChatKey = (str(form.get("platform", "")), str(form.get("app_id", "")),
                    str(form.get("chat_id", "")))
    picked = [small_int(v) for v in form.getall("m", [])][:50]
    if None in picked:
        return await _sync_error(request, "消息选择无效 / Invalid message selection.")
    ids = sorted({i for i in picked if i is not None})
    follow_up = str(form.get("follow_up", "")) in ("1", "on", "true")
    when, ok = _date(str(form.get("follow_up_on", "")))
    if not ok:
        return await _sync_error(request, "跟进日期格式应为 YYYY-MM-DD / Bad follow-up date.")
    if when is not None and when < local_today():
        return await _sync_error(request, "跟进日期不能早于今天 / The follow-up date is past.")
    now = datetime.now(UTC)
    since = now - timedelta(days=ctx.settings.chat_buffer_days)
    async with ctx.session() as db:
        if key not in await rep_chats(db, user, since):
            return await _sync_error(request, "这个聊天不属于你或已过期 / Not your chat, or "
                                              "it expired.")
        rows = [r for r in await chat_buffer.by_ids(db, ids)
                if (r.platform, r.app_id, r.chat_id) == key and r.sent_at >= since]
        if not ids or not rows:
            return await _sync_error(request, "请至少勾选一条消息 / Tick at least one message.")
        cands = aggregate([c for r in rows for c in await match_customers(db, r.text, user.id)])
        allowed = {c.customer_id for c in cands}
        customer_id = small_int(form.get("customer")) or (
            cands[0].customer_id if len(cands) == 1 else 0)
        if customer_id not in allowed:
            return await _sync_error(request, "请选择勾选的消息里提到的客户 / Pick a customer the "
                                              "ticked messages mention.")
        customer = await lock_customer(db, customer_id)
        draft = hashlib.sha256(f"web:{key}:{ids}".encode()).hexdigest()[:16]
        if customer is None:
            return await _sync_error(request, "客户不存在 / No such customer.")
        if await already_saved(db, customer.id, draft, since):
            raise web.HTTPFound("/app/visits?saved=dup")
        names = await sender_names(db, rows, key[0], key[1])
        messages = message_evidence(rows, names)
        visit, deal = await write_visit(
            db, customer, user_id=user.id, source="chat_sync",
            summary=messages_summary(messages),
            evidence={"draft": draft, "messages": messages}, now=now,
            follow_up_on=when if follow_up else None, follow_up=follow_up)
        audit(db, user, "visit.create", "visit", visit.id, **visit_audit_detail(visit, deal))
        await db.commit()
    raise web.HTTPFound("/app/visits?saved=1")
