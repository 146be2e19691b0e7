"""``help`` — generated from the routers' own ``help=`` texts, grouped (拜访 / 审批 / 提醒 /
其他), one example each — and the answer to text no command claims: a "记为拜访？" card when it
names a customer, else what the bot understood."""

from __future__ import annotations

from bot.ctx import Ctx
from bot.router import GROUPS, CommandHelp, Router
from cards import Button, Card

router = Router("help", group="其他")

GROUP_NAMES = {"拜访": "拜访 Visits", "审批": "审批 Approvals", "提醒": "提醒 Alerts",
               "其他": "其他 More"}
MEDIA_LINE = "🎤 语音 📷 门头照 直接发 / voice, photo"


def all_commands() -> list[CommandHelp]:
    """Every command of every router the bot runs, in router order."""
    from handlers import ROUTERS  # the package lists this module: import at call time

    return [h for r in ROUTERS for h in r.help]


def help_text(commands: list[CommandHelp]) -> str:
    """The help card's body: per group, ``• `example` 中文 / English`` per command."""
    lines = [MEDIA_LINE]
    for group in GROUPS:
        mine = [h for h in commands if h.group == group]
        if not mine:
            continue
        lines.append(f"**{GROUP_NAMES[group]}**")
        lines += [f"• `{h.example}` {h.summary}" for h in mine]
    return "\n".join(lines)


def help_card(ctx: Ctx, status: str = "") -> Card:
    who = ctx.user.name if ctx.user else (ctx.event.sender_name or ctx.event.sender)
    buttons = [] if status else [Button(text="好的 / Got it", style="primary",
                                        action=ctx.sign("help.ack"))]
    return Card(title="拜访助手 FieldBot · 帮助", subtitle=f"你好，{who}",
                text=help_text(all_commands()), buttons=buttons, status=status)


@router.command("help", "帮助", "?", "？", "menu", "菜单", help="说明 / help",
                example="帮助")
async def help_cmd(ctx: Ctx) -> None:
    await ctx.reply(help_card(ctx))


@router.action("help.ack")
async def help_ack(ctx: Ctx) -> None:
    ctx.toast("👍", "success")
    ctx.audit("help.ack", "card", ctx.event.event_id)
    await ctx.update_card(help_card(ctx, status="已读 ✓"))


def describe(ctx: Ctx) -> str:
    ev = ctx.event
    if ev.msg_type == "text":
        return f"收到文字：{ev.text}"
    if ev.msg_type == "voice" and ev.media:
        secs = round(ev.media.duration_ms / 1000) if ev.media.duration_ms else 0
        extra = f"（平台识别：{ev.media.recognition}）" if ev.media.recognition else ""
        return f"收到语音{f' {secs} 秒' if secs else ''}{extra}"
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
