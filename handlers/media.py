"""Voice notes and storefront photos → draft visits.

A voice message is acknowledged at once ("收到语音 7 秒 / 正在转写…", plus DingTalk's own
recognition text when it sent one) and deferred as the durable job ``transcribe``; an image
likewise as ``ocr``. The jobs run in ``jobs.worker`` (off the event loop) with a
``services`` object (``MediaServices`` below: downloads through the platform adapter, engines
in a thread pool, the file store, the business registry), match customers, and answer with a
card:

- voice → draft visit (transcript, detected customer, next-step date; 保存 = ``visit.save``);
- photo with a known customer → check-in card "在 <customer> 签到？" (time, GPS when present);
  saving writes a Visit(source ``photo``) whose evidence is the photo's sha256;
- photo without a match → "新建客户" card with the name read off the sign.

Bad input (not audio, too long, not an image, a decompression bomb, too large to download)
gets a clear message and the job ends; the worker carries on.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select

from bot.ctx import Ctx
from bot.dates import next_step_date  # noqa: F401 - re-exported for the pages and the CLI
from bot.platform import MediaError
from bot.router import Router
from cards import KV, Button, Card
from handlers.visits import (
    LOCAL_TZ,
    buffer_row,
    draft_card,
    find_customers,
    local_today,
    save_visit,
)
from storage import chat_buffer
from storage.models import Customer, Visit

log = logging.getLogger(__name__)

router = Router("media")

# The first line is what the bot understood (as the help echo showed it); DingTalk's own
# recognition text, when sent, is shown at once.
VOICE_ACK = "正在转写… / transcribing…"
IMAGE_ACK = "正在识别… / reading the photo…"
NO_NAME = ("没有在照片里识别到公司名称，请正对招牌重新拍一张。"
           "/ I could not read a company name; please retake the photo facing the sign.")
HOT_WORDS = 30
AUDIO_EXT = {"amr": ".amr", "ogg": ".ogg", "wav": ".wav", "mp3": ".mp3", "mp4": ".m4a"}


class MediaServices(Protocol):
    """What the worker passes to the media jobs (``integrations.media.service``)."""

    async def download(self, event) -> bytes: ...

    async def transcribe(self, data: bytes, hot_words: list[str] | None = None): ...

    async def ocr(self, data: bytes): ...

    async def store(self, data: bytes, ext: str = "") -> str: ...


# -- immediate answers ------------------------------------------------------------------------
@router.message("voice")
async def on_voice(ctx: Ctx) -> None:
    media = ctx.event.media
    # WeCom's callback carries no duration: say none rather than "0 秒" (the transcript card
    # gives the length measured from the audio itself)
    secs = round(media.duration_ms / 1000) if media and media.duration_ms else 0
    length = f" {secs} 秒" if secs else ""
    heard = f"（平台识别：{media.recognition}）" if media and media.recognition else ""
    if media is None or not media.key:
        await ctx.reply(f"收到语音{heard}（无法下载：消息里没有文件）")
        return
    await ctx.reply(f"收到语音{length}{heard}\n{VOICE_ACK}")
    await ctx.defer("transcribe")


@router.message("image")
async def on_image(ctx: Ctx) -> None:
    if ctx.event.media is None or not ctx.event.media.key:
        await ctx.reply("收到图片（无法下载：消息里没有文件）")
        return
    await ctx.reply(f"收到图片\n{IMAGE_ACK}")
    await ctx.defer("ocr")


def _user_message(exc: MediaError) -> str:
    return getattr(exc, "user_message", "") or (
        "无法处理这个文件，请重新发送。/ I could not process this file; please resend.")


async def hot_words(ctx: Ctx, limit: int = HOT_WORDS) -> list[str]:
    """The rep's customers, most recently active first: Whisper's prompt hot words."""
    return await hot_words_for(ctx.session, ctx.user.id if ctx.user else None, limit)


async def hot_words_for(session: Any, user_id: int | None, limit: int = HOT_WORDS
                        ) -> list[str]:
    """``hot_words`` without a Ctx (the mini-app's voice upload uses it too)."""
    q = select(Customer.name, Customer.short_name).order_by(
        Customer.last_activity_at.desc(), Customer.id.desc()).limit(limit)
    if user_id is not None:
        q = q.where(Customer.owner_id == user_id)
    words: list[str] = []
    res = await (session.exec(q) if hasattr(session, "exec") else session.execute(q))
    for name, short in res.all():
        words.append(short or name)
    return words


# -- voice ----------------------------------------------------------------------------------------
async def transcribe_job(ctx: Ctx, svc: MediaServices, args: dict[str, Any]) -> None:
    try:
        words = await hot_words(ctx)
        await ctx.session.commit()  # release the read transaction during the slow part
        data = await svc.download(ctx.event)
        tr = await svc.transcribe(data, words)
        audio_sha = await svc.store(data, AUDIO_EXT.get(tr.container or "", ""))
    except MediaError as exc:
        log.info("voice note not transcribed: %s", exc)
        await ctx.reply(_user_message(exc))
        return
    text = tr.text.strip()
    if not text:
        await ctx.reply("没有听清这段语音，请再说一遍。/ I heard no speech; please retry.")
        return
    ev = ctx.event
    await chat_buffer.set_text(ctx.session, platform=ev.platform, app_id=ev.app_id,
                               message_id=ev.message_id or ev.event_id, text=text)
    row = await buffer_row(ctx)
    cands = await find_customers(ctx, text)
    follow = next_step_date(text, local_today(ctx))
    secs = round(tr.audio_seconds) if tr.audio_seconds else 0
    body = f"**转写 / Transcript**{f'（{secs} 秒）' if secs else ''}：{text}"
    if not cands:
        body += "\n\n未识别到客户：请在语音里说出客户名称。/ No customer recognised."
    evidence = {"audio_sha256": audio_sha, "lang": tr.language,
                "seconds": round(tr.audio_seconds, 1)}
    card = draft_card(ctx, source="voice", candidates=cands,
                      message_ids=[row.id] if row and row.id else [], evidence=evidence,
                      body=body, title="语音拜访草稿 / Voice note", follow_up_on=follow,
                      summary="" if row else text[:200])
    await ctx.reply(card)
    ctx.audit("media.transcribed", "voice", ev.message_id or ev.event_id, engine=tr.engine,
              seconds=round(tr.seconds, 2), audio_seconds=round(tr.audio_seconds, 1),
              candidates=[c.customer_id for c in cands[:3]])


# -- photos ---------------------------------------------------------------------------------------
def _fmt_local(at: datetime) -> str:
    return at.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


REGISTRY_DOWN = "工商信息暂不可用 / registry unavailable"


async def registry_lookup(svc: Any, name: str) -> tuple[Any, bool]:
    """(entry or None, available) for ``name`` from ``svc.registry`` (issue 16 §4). A
    provider with ``check`` tells "not found" from "unavailable"; an exception is the
    latter. No registry configured: (None, True)."""
    registry = getattr(svc, "registry", None)
    if registry is None or not name:
        return None, True
    try:
        check = getattr(registry, "check", None)
        if check is not None:
            answer = await check(name)
            return answer.entry, answer.available
        return await registry.lookup(name), True
    except Exception:  # noqa: BLE001 - an optional lookup never blocks the card
        log.warning("business registry lookup failed", exc_info=True)
        return None, False


def registry_warning(entry: Any) -> str:
    return (f"⚠️ 登记状态「{entry.status}」：该企业已不在正常经营，请核实。"
            f"/ registered status {entry.status}: check before doing business.")


def registry_lines(entry: Any, available: bool) -> list[str]:
    """The registry's lines for a check-in card's text."""
    if not available:
        return [REGISTRY_DOWN]
    if entry is None:
        return []
    lines = [f"统一社会信用代码 / Credit code：{entry.credit_code or '-'}"]
    if entry.status:
        lines.append(f"登记状态 / Status：{entry.status}")
    if getattr(entry, "status_warning", False):
        lines.append(registry_warning(entry))
    if entry.address:
        lines.append(f"地址 / Address：{entry.address}")
    return lines


async def ocr_job(ctx: Ctx, svc: MediaServices, args: dict[str, Any]) -> None:
    ev = ctx.event
    try:
        data = await svc.download(ev)
        res = await svc.ocr(data)
        photo_sha = await svc.store(data, ".jpg")
    except MediaError as exc:
        log.info("photo not read: %s", exc)
        await ctx.reply(_user_message(exc))
        return
    name = res.name
    text = res.text
    gps = res.photo.gps if res.photo and res.photo.gps else (
        (ev.location.lat, ev.location.lon) if ev.location else None)
    await chat_buffer.set_text(ctx.session, platform=ev.platform, app_id=ev.app_id,
                               message_id=ev.message_id or ev.event_id,
                               text=f"[照片] {name or text[:60]}")
    if not name and not text.strip():
        await ctx.reply(NO_NAME)
        return
    cands = await find_customers(ctx, name) if name else []
    if not cands:
        cands = await find_customers(ctx, text)
    when = _fmt_local(ctx.clock())
    lines = [f"时间 / Time：{when}"]
    if gps:
        lines.append(f"位置 / GPS：{gps[0]:.6f}, {gps[1]:.6f}")
    if res.photo and res.photo.taken_at:
        lines.append(f"拍摄 / Taken：{res.photo.taken_at:%Y-%m-%d %H:%M}")
    evidence: dict[str, Any] = {"photo_sha256": photo_sha, "ocr_text": (name or text)[:30]}
    if gps:
        evidence["gps"] = [gps[0], gps[1]]
    if cands:
        entry, available = await registry_lookup(svc, name or cands[0].name)
        lines += registry_lines(entry, available)
        title = (f"在 {cands[0].name} 签到？" if len(cands) == 1 or
                 cands[1].score < cands[0].score - 0.08 else "在哪个客户签到？")
        card = draft_card(ctx, source="photo", candidates=cands, evidence=evidence,
                          body="\n".join(lines), title=title,
                          summary=f"门头照片签到：{name or cands[0].name}")
        await ctx.reply(card)
    elif name:
        await ctx.reply(await new_customer_card(ctx, svc, name, evidence, lines))
    else:
        await ctx.reply(NO_NAME + f"\n识别到的文字：{text[:200]}")
    ctx.audit("media.ocr", "photo", photo_sha, engine=res.engine, seconds=round(res.seconds, 2),
              name=name[:60], candidates=[c.customer_id for c in cands[:3]])


async def new_customer_card(ctx: Ctx, svc: Any, name: str, evidence: dict[str, Any],
                            lines: list[str]) -> Card:
    ev = ctx.event
    fields = [KV(label="名称 / Name", value=name)]
    entry, available = await registry_lookup(svc, name)
    lines = list(lines)
    if entry is not None:
        fields.append(KV(label="统一社会信用代码", value=entry.credit_code or "-"))
        if entry.status:
            fields.append(KV(label="登记状态 / Status", value=entry.status))
        if entry.address:
            fields.append(KV(label="地址", value=entry.address))
        if getattr(entry, "status_warning", False):
            lines.append(registry_warning(entry))
    elif not available:
        lines.append(REGISTRY_DOWN)
    args = {"n": name[:60], "p": ev.platform, "u": ev.sender,
            "e": {k: v for k, v in evidence.items() if k != "ocr_text"},
            "d": f"{ev.event_id}"[-32:]}
    if entry is not None:  # the new customer is pre-filled from the registry
        args["r"] = {"c": (entry.credit_code or "")[:18], "a": (entry.address or "")[:40],
                     "s": (entry.status or "")[:12]}
    return Card(title="新建客户", subtitle="照片里的公司还不是客户 / not a customer yet",
                fields=fields, text="\n".join(lines),
                buttons=[Button(text="新建客户并签到 / Create & check in", style="primary",
                                action=ctx.sign("media.new_customer", **args)),
                         Button(text="放弃 / Discard", style="danger",
                                action=ctx.sign("visit.discard", d=args["d"], p=ev.platform,
                                                u=ev.sender, src="photo"))])


@router.action("media.new_customer")
async def new_customer_tap(ctx: Ctx) -> None:
    args = ctx.action.args
    ev = ctx.event
    if args.get("u") != ev.sender or args.get("p", ev.platform) != ev.platform:
        ctx.toast("只有发起人可以操作这张卡片 / only the requester can do this", "warning")
        return
    name = str(args.get("n") or "").strip()
    if not name:
        ctx.toast("缺少客户名称 / no name", "error")
        return
    draft = str(args.get("d") or "")
    customer = (await ctx.session.execute(
        select(Customer).where(Customer.name == name))).scalars().first()
    if customer is not None and draft:
        done = (await ctx.session.execute(
            select(Visit.evidence).where(Visit.customer_id == customer.id))).scalars().all()
        if any((e or {}).get("draft") == draft for e in done):
            ctx.toast("已处理 / already done", "info")
            return
    reg = args.get("r") if isinstance(args.get("r"), dict) else {}
    code = str(reg.get("c") or "")
    if customer is None:  # pre-filled from the registry's answer the rep saw
        customer = Customer(name=name, owner_id=ctx.user.id if ctx.user else None,
                            created_at=ctx.clock(), credit_code=code[:18],
                            address=str(reg.get("a") or "")[:200])
        ctx.session.add(customer)
        await ctx.session.flush()
        ctx.audit("customer.create", "customer", customer.id, source="photo", name=name,
                  **({"credit_code": code} if code else {}))
    evidence = {**(args.get("e") or {}), "draft": draft}
    if reg:  # the registry's answer as the rep saw it, also on the visit
        evidence["registry"] = {"credit_code": code, "address": str(reg.get("a") or ""),
                                "status": str(reg.get("s") or "")}
    await save_visit(ctx, customer, "photo", f"门头照片签到：{name}", evidence)
    ctx.toast("已创建并签到 ✓ / created", "success")
    await ctx.update_card(Card(title="新建客户", color="green",
                               fields=[KV(label="客户 / Customer", value=name)],
                               status="已创建并签到 ✓"))


JOBS = {"transcribe": transcribe_job, "ocr": ocr_job}
