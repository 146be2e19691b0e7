"""Plain-text fallback: golden strings for an interactive card and a final one."""

from __future__ import annotations

from cards import KV, Button, Card, Checkbox, DatePicker, Option, Select, TextInput
from cards.render_text import render_text


def interactive() -> Card:
    return Card(
        title="折扣审批", subtitle="华为 · 报价 Q-1024", color="orange",
        fields=[KV(label="金额", value="¥120,000"), KV(label="折扣", value="15%")],
        text="**需要你的审批**\n超过 10% 需经理同意",
        inputs=[Select(name="reason", label="原因",
                       options=[Option(value="p", text="价格"), Option(value="c", text="竞品")]),
                Checkbox(name="notify", label="通知销售"),
                DatePicker(name="due", label="截止日期"),
                TextInput(name="note", label="备注")],
        buttons=[Button(text="同意", action="t1", style="primary"),
                 Button(text="拒绝", action="t2", style="danger")],
        footer="FieldBot")


def test_interactive_card_golden():
    assert render_text(interactive()) == (
        "【折扣审批】\n"
        "华为 · 报价 Q-1024\n"
        "金额：¥120,000\n"
        "折扣：15%\n"
        "需要你的审批\n超过 10% 需经理同意\n"
        "原因：价格 / 竞品\n"
        "[通知销售]\n"
        "[截止日期]\n"
        "[备注]\n"
        "[同意]  [拒绝]\n"
        "FieldBot")


def test_final_card_drops_inputs_and_buttons():
    card = interactive().model_copy(update={"status": "已同意 ✓ 张经理"})
    assert render_text(card) == (
        "【折扣审批】\n"
        "华为 · 报价 Q-1024\n"
        "金额：¥120,000\n"
        "折扣：15%\n"
        "需要你的审批\n超过 10% 需经理同意\n"
        "已同意 ✓ 张经理\n"
        "FieldBot")


def test_minimal_card():
    assert render_text(Card(title="帮助")) == "【帮助】"


def test_button_tokens_never_leak():
    assert "t1" not in render_text(interactive()) and "t2" not in render_text(interactive())
