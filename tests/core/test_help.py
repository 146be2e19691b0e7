"""``help`` is generated from the routers: every command has a "中文 / English" summary and
an example that really starts it, and the help card shows every one on every platform, whole
(WeCom's template card cuts its text at 512 characters)."""

from __future__ import annotations

import json

import pytest

from bot.router import GROUPS, Router
from cards import Card
from cards.render_dingtalk import render_card as render_dingtalk
from cards.render_feishu import render_feishu
from cards.render_wecom import SUB_TITLE_CHARS
from cards.render_wecom import render_card as render_wecom
from handlers import ROUTERS
from handlers.help import all_commands, help_text

EXPECTED = {"同步", "我的拜访", "报价", "折扣", "合同", "新客户", "审批", "待我审批", "我的申请",
            "委托", "取消委托", "审批规则", "提醒", "帮助"}


def test_every_command_has_help_and_a_working_example():
    listed = {h.words[0] for h in all_commands()} | {
        w for h in all_commands() for w in h.words}
    assert EXPECTED <= listed
    for router in ROUTERS:
        handlers = set(router.commands.values())
        helped = {router.commands[h.words[0].lower()] for h in router.help}
        assert handlers == helped, f"{router.name}: a command without help"
        for h in router.help:
            zh, _, en = h.summary.partition(" / ")
            assert zh.strip() and en.strip() and en.isascii(), h
            assert h.group in GROUPS, h
            first = h.example.split()[0].lower()
            assert router.commands.get(first) is router.commands[h.words[0].lower()], h


def test_a_command_without_help_is_refused():
    r = Router("x")
    with pytest.raises(TypeError):
        r.command("foo")  # help= is required
    with pytest.raises(ValueError):
        r.command("foo", help="只有中文")


def test_help_card_lists_every_command_on_every_platform():
    text = help_text(all_commands())
    card = Card(title="拜访助手 FieldBot · 帮助", text=text)
    groups = [line for line in text.splitlines() if line.startswith("**")]
    assert [g.strip("*").split()[0] for g in groups] == list(GROUPS)
    wecom = render_wecom(card, "t")["sub_title_text"]
    assert len(wecom) <= SUB_TITLE_CHARS and not wecom.endswith("…")
    rendered = {"wecom": wecom,
                "dingtalk": json.dumps(render_dingtalk(card), ensure_ascii=False),
                "feishu": json.dumps(render_feishu(card), ensure_ascii=False)}
    for h in all_commands():
        for platform, out in rendered.items():
            assert h.example in out and h.summary in out, (platform, h)
