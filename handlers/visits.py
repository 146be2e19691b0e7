"""Visits: one-tap chat sync, the draft-visit card every capture path shares, ``我的拜访``.

Flow: ``同步`` / ``sync`` (or the menu card's sync button) → the last 3 buffered messages of
this chat that name a customer → a draft card (customer or a choice of candidates, the
messages with sender and time, 需跟进 + date, 保存 / 保存并跟进 / 放弃) → ``visit.save`` writes
the Visit, touches the customer and its open deal, adds a follow-up Task, updates the card to
已保存 ✓ and writes an audit row.

Shared with the voice/photo pipeline (stable API):

- ``draft_card(ctx, source=..., candidates=..., message_ids=..., evidence=..., ...)`` builds
  the draft card whose 保存 button is the signed action ``visit.save``. Its args carry refs, not
  bodies (a button value is ≤ 1000 bytes): buffered ``chat_messages`` ids (put a transcript /
  OCR text into the buffer row first with ``storage.chat_buffer.set_text``) plus a small
  ``evidence`` dict (photo sha256, GPS…), copied into ``Visit.evidence`` on save.
- ``save_visit(ctx, customer_id, source, summary, evidence, follow_up_on, follow_up=None)``
  writes a visit directly (for a caller that already has the confirmation).

A second 保存 on the same draft answers 已处理 and writes nothing (the draft id is kept in
``Visit.evidence["draft"]``; the customer row is locked first, so two concurrent taps
serialise). Only the rep who asked may save or discard.

Known gap: on Feishu with the history scope, sync should read ``im/v1/messages`` (and expand
merged-forward records) instead of the buffer; ``integrations/feishu/client.py`` has no
history call yet and handlers cannot reach a platform client, so sync always reads the buffer.
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import select

from bot.ctx import Ctx
from bot.dates import next_step_date
from bot.matching import Candidate, MatcherCache, is_ambiguous
from bot.router import Router
from cards import KV, Button, Card, Checkbox, DatePicker, Option, Select
from sales.location_checkin import take_pending
from storage import chat_buffer
from storage.models import ChatMessage, Customer, Deal, Identity, Task, User, Visit

log = logging.getLogger(__name__)

router = Router("visits", group="拜访")

LOCAL_TZ = ZoneInfo("Asia/Shanghai")  # what reps read; storage stays UTC
SYNC_MESSAGES = 3
SCAN_LIMIT = 60
MAX_CANDIDATES = 5
OPEN_STAGES = ("lead", "qualified", "proposal", "negotiation")
SOURCE_LABEL = {"chat_sync": "聊天同步", "voice": "语音", "photo": "照片", "manual": "手动",
                "text": "文字", "alert": "提醒跟进"}
SYNC_WORDS = ("同步", "sync")

NO_CUSTOMER_TEXT = (
    "最近 {days} 天这个聊天里没有提到客户，无法同步。先说说拜访情况（例如“今天拜访了华东精密，"
    "下周二再去”），再发送“同步”。\n"
    "No customer was mentioned in this chat recently; mention one, then send `sync`.")

# One matcher per database engine (an app has one; tests make many): a cache beside the
# engine, not global state, and it goes when the engine goes.
_matchers: weakref.WeakKeyDictionary[Any, MatcherCache] = weakref.WeakKeyDictionary()


def matcher_cache_for(engine: Any) -> MatcherCache:
    """The engine's matcher cache (rebuilt when the customer list changes)."""
    cache = _matchers.get(engine)
    if cache is None:
        cache = _matchers[engine] = MatcherCache()
    return cache


def matcher_cache(ctx: Ctx) -> MatcherCache:
    return matcher_cache_for(ctx.session.bind)


async def match_customers(session: Any, text: str, owner_id: int | None) -> list[Candidate]:
    """Ranked customer candidates for ``text`` (``owner_id``'s customers first on a tie);
    Ctx-free, so the chat and the mini-app share one matcher."""
    matcher = await matcher_cache_for(session.bind).get(session)
    return matcher.find(text, owner_id=owner_id)


async def find_customers(ctx: Ctx, text: str) -> list[Candidate]:
    """Ranked customer candidates for ``text`` (the rep's own customers first on a tie)."""
    matcher = await matcher_cache(ctx).get(ctx.session)
    return matcher.find(text, owner_id=ctx.user.id if ctx.user else None)


def is_command(text: str) -> bool:
    """A message that starts with any of the bot's commands (``报价 …``, ``帮助``) is an
    instruction to the bot, not a note about a visit: sync skips it."""
    from handlers import ROUTERS  # the package imports this module: at call time

    text = (text or "").strip()
    if not text:
        return True
    word = text.split()[0].lower()
    return any(word in r.commands for r in ROUTERS)


async def buffer_row(ctx: Ctx) -> ChatMessage | None:
    """The chat-buffer row of the current message (None when it was not buffered)."""
    ev = ctx.event
    q = select(ChatMessage).where(ChatMessage.platform == ev.platform,
                                  ChatMessage.app_id == ev.app_id,
                                  ChatMessage.message_id == (ev.message_id or ev.event_id))
    return (await ctx.session.execute(q)).scalars().first()


def local_today(ctx: Ctx) -> date:
    return ctx.clock().astimezone(LOCAL_TZ).date()


def _fmt_time(at: datetime) -> str:
    return at.astimezone(LOCAL_TZ).strftime("%m-%d %H:%M")


# -- one-tap sync ------------------------------------------------------------------------------
@router.command(*SYNC_WORDS, help="聊天记成拜访 / chat to visit")
async def sync_cmd(ctx: Ctx) -> None:
    await _sync(ctx)


@router.action("visit.sync")
async def sync_tap(ctx: Ctx) -> None:
    """The sync button of the menu card."""
    ctx.toast("正在同步… / syncing", "info")
    await _sync(ctx)


async def _sync(ctx: Ctx) -> None:
    """The last few buffered messages that name a customer (commands to the bot skipped),
    one draft per customer: messages about two customers never mix in one visit."""
    ev = ctx.event
    days = ctx.settings.chat_buffer_days
    rows = await chat_buffer.recent(
        ctx.session, platform=ev.platform, app_id=ev.app_id, chat_id=ev.chat.id or ev.sender,
        since=ctx.clock() - timedelta(days=days), limit=SCAN_LIMIT,
        exclude_message_id=ev.message_id or ev.event_id)
    picked: list[tuple[ChatMessage, list[Candidate]]] = []
    for row in rows:
        text = (row.text or "").strip()
        if is_command(text):
            continue
        cands = await find_customers(ctx, text)
        if cands:
            picked.append((row, cands))
            if len(picked) == SYNC_MESSAGES:
                break
    if not picked:
        await ctx.reply(NO_CUSTOMER_TEXT.format(days=days))
        return
    picked.reverse()  # oldest first on the card
    # group by each message's best customer (an ambiguous message stays with its best guess;
    # the card then asks which)
    groups: dict[int, list[tuple[ChatMessage, list[Candidate]]]] = {}
    for row, cands in picked:
        groups.setdefault(cands[0].customer_id, []).append((row, cands))
    today = local_today(ctx)
    names = await _sender_names(ctx, [row for row, _ in picked])
    for n, group in enumerate(groups.values()):
        ranked = aggregate([c for _row, cands in group for c in cands])
        # the next step named in the newest message that names one ("今天拜访…，明天再确认"
        # → tomorrow, not the visit's own "today"); the page's sync and the voice note agree
        follow = next((d for row, _ in reversed(group)
                       if (d := next_step_date(row.text, today))), None)
        lines = [f"**{names.get(row.sender, row.sender)}** {_fmt_time(row.sent_at)}：{row.text}"
                 for row, _ in group]
        title = "" if len(groups) == 1 else f"同步的拜访 {n + 1}/{len(groups)} / Visit {n + 1}"
        card = draft_card(ctx, source="chat_sync", candidates=ranked,
                          message_ids=[row.id for row, _ in group], body="\n".join(lines),
                          follow_up_on=follow, title=title, part=n)
        await ctx.reply(card)
    ctx.audit("visit.sync", "chat", ev.chat.id or ev.sender, messages=len(picked),
              drafts=len(groups), candidates=sorted(groups))


def aggregate(cands: Sequence[Candidate]) -> list[Candidate]:
    """One candidate per customer over several messages: best score plus a little per extra
    mention, so the customer the chat keeps naming ranks first."""
    best: dict[int, Candidate] = {}
    hits: dict[int, int] = {}
    for c in cands:
        hits[c.customer_id] = hits.get(c.customer_id, 0) + 1
        if c.customer_id not in best or c.score > best[c.customer_id].score:
            best[c.customer_id] = c
    out = [Candidate(c.customer_id, c.name, round(min(1.0, c.score + 0.05 * (hits[i] - 1)), 4),
                     c.matched, c.kind) for i, c in best.items()]
    out.sort(key=lambda c: (-c.score, c.customer_id))
    return out[:MAX_CANDIDATES]


async def _sender_names(ctx: Ctx, rows: Sequence[ChatMessage]) -> dict[str, str]:
    return await sender_names(ctx.session, rows, ctx.event.platform, ctx.event.app_id)


async def sender_names(session: Any, rows: Sequence[ChatMessage], platform: str,
                       app_id: str) -> dict[str, str]:
    """Sender id → a person's name, never a platform id: our user's name for a known identity,
    else the identity's display name, else the name the platform sent with the message."""
    names = {r.sender: r.sender_name for r in rows
             if r.sender_name and r.sender_name != r.sender}
    senders = {r.sender for r in rows}
    if senders:
        q = (select(Identity.external_id, User.name, Identity.display_name)
             .outerjoin(User, User.id == Identity.user_id)
             .where(Identity.platform == platform, Identity.app_id == app_id,
                    Identity.external_id.in_(senders)))
        for ext, user_name, display in (await session.exec(q)).all():
            if user_name or display:
                names[ext] = user_name or display
    return names


def message_evidence(rows: Sequence[ChatMessage], names: dict[str, str]
                     ) -> list[dict[str, Any]]:
    """The buffered messages as a visit's evidence (what a chat-sync visit stores)."""
    return [{"id": r.id, "message_id": r.message_id, "sender": r.sender,
             "sender_name": names.get(r.sender, ""), "at": r.sent_at.isoformat(),
             "type": r.msg_type, "text": r.text} for r in rows]


def messages_summary(messages: Sequence[dict[str, Any]]) -> str:
    return "\n".join(f"{m['sender_name'] or m['sender']}：{m['text']}" for m in messages)


# -- the draft card (shared with voice / photo) ------------------------------------------------
def draft_card(ctx: Ctx, *, source: str, candidates: Sequence[Candidate],
               message_ids: Sequence[int] = (), evidence: dict[str, Any] | None = None,
               body: str = "", title: str = "", follow_up_on: date | None = None,
               summary: str = "", part: int = 0) -> Card:
    """A draft visit for the rep who sent the current event to confirm.

    ``candidates``: ranked (``bot.matching``); one clear winner is preselected, several close
    ones become a 客户 select. ``message_ids``: ``chat_messages`` rows whose text is the
    evidence (kept while the buffer keeps them). ``evidence``: small extras (≤ ~300 bytes of
    JSON: photo hash, GPS). ``summary``: a short summary (≤ 200 chars) saved as is; by default
    the summary is built from the messages on save. ``part``: the n-th of several drafts one
    event makes (a sync about two customers)."""
    ev = ctx.event
    ambiguous = is_ambiguous(list(candidates))
    chosen = list(candidates[:MAX_CANDIDATES]) if ambiguous else list(candidates[:1])
    key = f"{ev.dedupe_key}:{source}" + (f":{part}" if part else "")  # part: one of several
    draft = hashlib.sha256(key.encode()).hexdigest()[:16]
    args: dict[str, Any] = {
        "d": draft, "p": ev.platform, "u": ev.sender, "src": source,
        "c": [c.customer_id for c in chosen], "m": [int(i) for i in message_ids],
        "t": int(ctx.clock().timestamp()),
    }
    if evidence:
        args["e"] = evidence
    if summary:
        args["s"] = summary[:200]
    if follow_up_on:
        args["fu"] = follow_up_on.isoformat()
    fields: list[KV] = []
    inputs: list[Any] = []
    if not chosen:
        fields.append(KV(label="客户", value="未识别 / unknown"))
    elif ambiguous:
        inputs.append(Select(name="customer", label="选择客户 / Customer",
                             placeholder="提到了多个客户，请选择",
                             options=[Option(value=str(c.customer_id), text=c.name)
                                      for c in chosen]))
    else:
        by_sound = chosen[0].kind.endswith(("~sound", "~pinyin", "~initials"))
        fields.append(KV(label="客户 / Customer", value=chosen[0].name + (
            "（按读音识别，请确认 / matched by sound: please check）" if by_sound else "")))
    fields.append(KV(label="来源 / Source", value=SOURCE_LABEL.get(source, source)))
    if follow_up_on:
        fields.append(KV(label="建议跟进", value=follow_up_on.isoformat()))
    inputs.append(Checkbox(name="follow_up", label="需跟进 / needs follow-up",
                           checked=follow_up_on is not None))
    inputs.append(DatePicker(name="follow_up_on", label="跟进日期 / follow-up date",
                             initial=follow_up_on.isoformat() if follow_up_on else ""))
    save = ctx.sign("visit.save", **args)
    buttons = [Button(text="保存 / Save", style="primary", action=save)]
    if chosen:
        buttons.append(Button(text="保存并跟进", action=ctx.sign("visit.save", f=1, **args)))
    buttons.append(Button(text="放弃 / Discard", style="danger",
                          action=ctx.sign("visit.discard", d=draft, p=ev.platform,
                                          u=ev.sender, src=source)))
    return Card(title=title or "拜访记录草稿 / Draft visit",
                subtitle="确认后保存 / confirm to save", fields=fields, text=body,
                inputs=inputs, buttons=buttons, card_id=f"visit-{draft}",
                footer="只有发起人可以保存 / only the requester can save")


def _truthy(value: Any) -> bool:
    if isinstance(value, list):
        return any(_truthy(v) for v in value)
    return value is True or str(value).strip().lower() in ("true", "1", "on", "yes", "checked")


def _form_date(value: Any) -> date | None:
    """Feishu sends ``2024-05-21 +0800``, DingTalk ``2024-05-21`` or epoch millis."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        if text.isdigit() and len(text) >= 12:
            return datetime.fromtimestamp(int(text) / 1000, LOCAL_TZ).date()
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _not_yours(ctx: Ctx, args: dict[str, Any]) -> bool:
    ev = ctx.event
    if args.get("u") == ev.sender and args.get("p", ev.platform) == ev.platform:
        return False
    ctx.toast("只有发起人可以操作这张卡片 / only the requester can do this", "warning")
    return True


@router.action("visit.save")
async def save_tap(ctx: Ctx) -> None:
    args = ctx.action.args
    if _not_yours(ctx, args):
        return
    form = ctx.event.action.form if ctx.event.action else {}
    allowed = [int(c) for c in args.get("c") or []]
    customer_id: int | None = None
    picked = form.get("customer")
    if isinstance(picked, list):
        picked = picked[0] if picked else None
    if picked not in (None, ""):
        try:
            customer_id = int(str(picked))
        except ValueError:
            customer_id = None
        if customer_id not in allowed:  # only a candidate the bot offered (and signed)
            ctx.toast("无效的客户选择 / invalid customer", "error")
            return
    elif len(allowed) == 1:
        customer_id = allowed[0]
    if customer_id is None:
        ctx.toast("请先选择客户 / pick the customer first", "warning")
        return
    customer = await _lock_customer(ctx, customer_id)
    if customer is None:
        ctx.toast("客户不存在 / customer not found", "error")
        return
    draft = str(args.get("d") or "")
    if await _already_saved(ctx, customer_id, draft, int(args.get("t") or 0)):
        ctx.toast("已处理 / already done", "info")
        return
    rows = await chat_buffer.by_ids(ctx.session, [int(i) for i in args.get("m") or []])
    if args.get("m") and not rows:
        ctx.toast("聊天记录已过期，请重新同步 / messages expired, sync again", "warning")
        return
    names = await _sender_names(ctx, rows)
    messages = message_evidence(rows, names)
    evidence: dict[str, Any] = {**(args.get("e") or {}), "draft": draft}
    if messages:
        evidence["messages"] = messages
    summary = str(args.get("s") or "") or messages_summary(messages)
    follow_up = bool(args.get("f")) or _truthy(form.get("follow_up"))
    when = _form_date(form.get("follow_up_on")) or (
        date.fromisoformat(args["fu"]) if args.get("fu") and follow_up else None)
    visit = await save_visit(ctx, customer, str(args.get("src") or "manual"), summary,
                             evidence, when if follow_up else None, follow_up=follow_up)
    ctx.toast("已保存 ✓ / saved", "success")
    fields = [KV(label="客户 / Customer", value=customer.name),
              KV(label="来源 / Source", value=SOURCE_LABEL.get(visit.source, visit.source))]
    if follow_up:
        fields.append(KV(label="跟进 / Follow-up",
                         value=when.isoformat() if when else "已建任务 / task created"))
    await ctx.update_card(Card(title="拜访已记录 / Visit saved", color="green", fields=fields,
                               text="\n".join(f"{m['sender_name'] or m['sender']}：{m['text']}"
                                              for m in messages)[:800],
                               status="已保存 ✓", card_id=f"visit-{draft}"))


@router.action("visit.discard")
async def discard_tap(ctx: Ctx) -> None:
    args = ctx.action.args
    if _not_yours(ctx, args):
        return
    ctx.toast("已放弃 / discarded", "info")
    ctx.audit("visit.discard", "visit_draft", args.get("d", ""), source=args.get("src", ""))
    await ctx.update_card(Card(title="拜访记录草稿 / Draft visit", color="grey",
                               status="已放弃 / discarded", card_id=f"visit-{args.get('d')}"))


async def _lock_customer(ctx: Ctx, customer_id: int) -> Customer | None:
    return await lock_customer(ctx.session, customer_id)


async def lock_customer(session: Any, customer_id: int) -> Customer | None:
    """The customer row, locked for this transaction on PostgreSQL (SQLite serialises
    writers itself): two taps on one draft cannot both pass the already-saved check."""
    q = select(Customer).where(Customer.id == customer_id).with_for_update()
    return (await session.exec(q)).first()


async def _already_saved(ctx: Ctx, customer_id: int, draft: str, since_ts: int) -> bool:
    since = datetime.fromtimestamp(max(since_ts - 60, 0), ctx.clock().tzinfo)
    return await already_saved(ctx.session, customer_id, draft, since)


async def already_saved(session: Any, customer_id: int, draft: str, since: datetime) -> bool:
    """A visit of this customer since ``since`` already carries this draft id."""
    if not draft:
        return False
    q = select(Visit.evidence).where(Visit.customer_id == customer_id,
                                     Visit.created_at >= since)
    return any((ev or {}).get("draft") == draft
               for ev in (await session.exec(q)).all())


async def save_visit(ctx: Ctx, customer_id: int | Customer, source: str, summary: str,
                     evidence: dict[str, Any], follow_up_on: date | None = None,
                     follow_up: bool | None = None) -> Visit:
    """Write a visit by the current user (``write_visit``) and audit it. Raises
    ``LookupError`` for an unknown customer."""
    customer = customer_id if isinstance(customer_id, Customer) else \
        await _lock_customer(ctx, customer_id)
    if customer is None:
        raise LookupError(f"customer {customer_id} not found")
    visit, deal = await write_visit(ctx.session, customer, user_id=ctx.user.id if ctx.user
                                    else None, source=source, summary=summary,
                                    evidence=evidence, now=ctx.clock(),
                                    follow_up_on=follow_up_on, follow_up=follow_up)
    ctx.audit("visit.create", "visit", visit.id, **visit_audit_detail(visit, deal))
    return visit


async def write_visit(session: Any, customer: Customer, *, user_id: int | None, source: str,
                      summary: str, evidence: dict[str, Any], now: datetime,
                      follow_up_on: date | None = None, follow_up: bool | None = None
                      ) -> tuple[Visit, Deal | None]:
    """The visit itself, Ctx-free (the chat and the mini-app share it): link the customer's
    open deal (the user's own first, then the most recently active), touch both
    last-activity stamps, add a follow-up task when asked (``follow_up`` defaults to "a date
    was given"). The caller audits (``visit_audit_detail``) and commits."""
    deals = (await session.exec(
        select(Deal).where(Deal.customer_id == customer.id, Deal.stage.in_(OPEN_STAGES))
        .order_by(Deal.last_activity_at.desc(), Deal.id.desc()))).all()
    deal = next((d for d in deals if user_id and d.owner_id == user_id), None) or \
        (deals[0] if deals else None)
    visit = Visit(user_id=user_id, customer_id=customer.id, deal_id=deal.id if deal else None,
                  source=source, summary=summary, evidence=evidence,
                  follow_up_on=follow_up_on, created_at=now)
    session.add(visit)
    customer.last_activity_at = now
    session.add(customer)
    if deal is not None:
        deal.last_activity_at = now
        session.add(deal)
    if follow_up if follow_up is not None else follow_up_on is not None:
        session.add(Task(user_id=user_id, customer_id=customer.id,
                         deal_id=deal.id if deal else None,
                         title=f"跟进 {customer.name}", due_on=follow_up_on,
                         created_at=now))
    await session.flush()
    await take_pending(session, visit, now)  # a location sent in chat just before
    return visit, deal


def visit_audit_detail(visit: Visit, deal: Deal | None) -> dict[str, Any]:
    """The ``visit.create`` audit row's detail (the same from the chat and the pages)."""
    return dict(source=visit.source, customer_id=visit.customer_id,
                deal_id=deal.id if deal else None,
                follow_up_on=str(visit.follow_up_on or ""),
                draft=str((visit.evidence or {}).get("draft", "")))


# -- a note that names a customer ---------------------------------------------------------------
NOTE_MIN_CHARS = 4  # "好的", "ok" never become visits


@router.fallback()
async def note_or_echo(ctx: Ctx) -> None:
    """Text no command claims: when it names a customer, offer to file it (one tap) —
    "拜访了华东精密，谈了秋季订货" → a "记为拜访？" draft; else say what was understood."""
    from handlers.help import understood  # help is the last router: the plain echo

    ev = ctx.event
    text = (ev.text or "").strip()
    # 1:1 with the bot only: in a group, people talk to each other, not to the bot
    if (ev.kind == "message" and ev.msg_type in ("text", "rich_text") and ctx.user is not None
            and ev.chat.type != "group" and len(text) >= NOTE_MIN_CHARS):
        cands = await find_customers(ctx, text)
        if cands:
            row = await buffer_row(ctx)
            row_id = row.id if row else None
            card = draft_card(ctx, source="text", candidates=cands,
                              message_ids=[row_id] if row_id else [],
                              body=f"**记录 / Note**：{text}",
                              title="记为拜访？/ File as a visit?",
                              follow_up_on=next_step_date(text, local_today(ctx)),
                              summary="" if row_id else text[:200])
            await ctx.reply(card)
            return
    await understood(ctx)


# -- my visits -----------------------------------------------------------------------------------
@router.command("我的拜访", "visits", "拜访记录", help="最近拜访 / my visits")
async def my_visits(ctx: Ctx) -> None:
    if ctx.user is None:
        await ctx.reply("还没有识别到你的账号，请联系管理员绑定。"
                        "/ Your account is not linked yet.")
        return
    rows = (await ctx.session.exec(
        select(Visit, Customer.name).join(Customer, Customer.id == Visit.customer_id,
                                          isouter=True)
        .where(Visit.user_id == ctx.user.id)
        .order_by(Visit.created_at.desc(), Visit.id.desc()).limit(10))).all()
    if not rows:
        await ctx.reply("还没有拜访记录。聊聊拜访情况后发送“同步”即可记录。"
                        "/ No visits yet: mention a customer in chat, then send `sync`.")
        return
    lines = []
    for visit, name in rows:
        parts = [_fmt_time(visit.created_at), name or "（未知客户）",
                 SOURCE_LABEL.get(visit.source, visit.source), evidence_summary(visit)]
        if visit.follow_up_on:
            parts.append(f"跟进 {visit.follow_up_on.isoformat()}")
        lines.append(" · ".join(p for p in parts if p))
    await ctx.reply(Card(title="我的拜访 / My visits", subtitle=f"最近 {len(rows)} 条",
                         text="\n".join(lines)))


def evidence_summary(visit: Visit) -> str:
    ev = visit.evidence or {}
    bits = []
    if ev.get("messages"):
        bits.append(f"{len(ev['messages'])} 条消息")
    if ev.get("transcript"):
        t = str(ev["transcript"])
        bits.append("语音：" + (t[:24] + "…" if len(t) > 24 else t))
    if ev.get("photo_sha256"):
        bits.append(f"照片 {str(ev['photo_sha256'])[:8]}")
    if ev.get("ocr_text"):
        bits.append("招牌：" + str(ev["ocr_text"])[:16])
    return "，".join(bits)
