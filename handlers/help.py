"""``help`` and the echo that shows the path end to end: what the bot understood."""

from __future__ import annotations

from bot.ctx import Ctx
from bot.router import Router
from cards import KV, Button, Card

router = Router("help")

HELP_TEXT = (
    "我是拜访助手 FieldBot。可以这样用：\n"
    "• 发送 `帮助` / `help` 查看本说明\n"
    "• 发送文字、语音或门头照片，我会告诉你我理解了什么\n"
    "I am FieldBot: send text, a voice note or a storefront photo."
)


@router.command("help", "帮助", "?", "？", "menu", "菜单")
async def help_cmd(ctx: Ctx) -> None:
    card = Card(title="拜访助手 FieldBot", text=HELP_TEXT,
                fields=[KV(label="你是 / You", value=ctx.user.name if ctx.user else
                           ctx.event.sender_name or ctx.event.sender)],
                buttons=[Button(text="好的 / Got it", style="primary",
                                action=ctx.sign("help.ack"))])
    await ctx.reply(card)


@router.action("help.ack")
async def help_ack(ctx: Ctx) -> None:
    ctx.toast("👍", "success")
    ctx.audit("help.ack", "card", ctx.event.event_id)
    await ctx.update_card(Card(title="拜访助手 FieldBot", text=HELP_TEXT, status="已读 ✓"))


def describe(ctx: Ctx) -> str:
    ev = ctx.event
    if ev.msg_type == "text":
        return f"收到文字：{ev.text}"
    if ev.msg_type == "voice" and ev.media:
        secs = round((ev.media.duration_ms or 0) / 1000)
        extra = f"（平台识别：{ev.media.recognition}）" if ev.media.recognition else ""
        return f"收到语音 {secs} 秒{extra}"
    if ev.msg_type == "image":
        return "收到图片"
    if ev.msg_type == "location" and ev.location:
        loc = ev.location
        return f"收到位置：{loc.label} ({loc.lat:.5f}, {loc.lon:.5f})"
    if ev.msg_type == "rich_text":
        return f"收到图文消息：{ev.text}"
    return f"收到 {ev.msg_type} 消息"


@router.fallback()
async def understood(ctx: Ctx) -> None:
    await ctx.reply(describe(ctx) + "\n发送 `帮助` 查看我能做什么。")
