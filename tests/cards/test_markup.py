"""Hostile user text in every renderer: no link, mention, tag or auto-link survives into a
platform's markdown, and the words stay readable."""

from __future__ import annotations

import json
import re

import pytest

from cards import KV, Card
from cards.markup import inert
from cards.render_dingtalk import render_card as render_dingtalk
from cards.render_feishu import render_feishu
from cards.render_text import render_text
from cards.render_wecom import render_card as render_wecom

HOSTILE = ["[点此快速审批](https://evil.example/approve)", "<at id=all></at>",
           "<font color='red'>紧急</font>", "![x](http://evil.example/p.png)",
           "<a href='javascript:alert(1)'>x</a>", "见 https://evil.example/approve 立即处理",
           "[文](lark://applink.feishu.cn/x)", "<at user_id=\"ou_boss\">老板</at>"]
DANGER = [re.compile(r"\[[^\]]*\]\("), re.compile(r"<\s*(at|font|a|img)\b", re.I),
          re.compile(r"(?i)\b(https?|javascript|lark):(//)?[\w.]")]


def rendered(card: Card) -> dict[str, str]:
    return {"feishu": json.dumps(render_feishu(card), ensure_ascii=False),
            "dingtalk": json.dumps(render_dingtalk(card), ensure_ascii=False),
            "wecom": json.dumps(render_wecom(card, "t"), ensure_ascii=False),
            "text": render_text(card)}


@pytest.mark.parametrize("evil", HOSTILE)
def test_hostile_text_is_shown_not_obeyed(evil):
    card = Card(title="报价审批 #7", fields=[KV(label="备注 / Note", value=evil)],
                text=f"**流程**：李经理 ⏳\n{evil}", status="", footer=evil)
    for platform, out in rendered(card).items():
        if platform in ("wecom", "text"):  # plain text there: nothing is markup
            continue
        for pattern in DANGER:
            assert not pattern.search(out), (platform, pattern.pattern, out)
    assert "点此快速审批" in inert(HOSTILE[0]) and "evil.example" in inert(HOSTILE[0])


def test_our_own_markup_survives():
    out = inert("**转写 / Transcript**：今天 `同步`")
    assert out == "**转写 / Transcript**：今天 `同步`"
