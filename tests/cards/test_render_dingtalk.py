"""``cards.render_dingtalk``: golden cardParamMaps (regenerate with UPDATE_GOLDEN=1)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cards import KV, Button, Card, Checkbox, DatePicker, Option, Select, TextInput
from cards.render_dingtalk import render_card

GOLDEN = Path(__file__).parent / "golden"
TOKEN = "eyJhIjp7fSwibiI6ImhlbHAuYWNrIn0.c2lnbmF0dXJlLXNpZ25h"

CARDS = {
    "dingtalk_basic": Card(title="拜访助手 FieldBot", text="发送 **help** 查看说明\n第二行",
                           fields=[KV(label="你是 / You", value="张三")],
                           buttons=[Button(text="好的 / Got it", action=TOKEN,
                                           style="primary")]),
    "dingtalk_form": Card(
        title="拜访记录", subtitle="客户：华东五金", color="orange", footer="FieldBot",
        inputs=[Select(name="stage", label="阶段", placeholder="选择",
                       options=[Option(value="lead", text="线索"),
                                Option(value="won", text="成交")]),
                Checkbox(name="follow", label="需要跟进", checked=True),
                DatePicker(name="next", label="下次拜访", initial="2025-01-31"),
                TextInput(name="note", label="备注", placeholder="…", required=True)],
        buttons=[Button(text="保存", action=TOKEN, style="primary"),
                 Button(text="作废", action=TOKEN + "x", style="danger")]),
    "dingtalk_final": Card(title="审批", fields=[KV(label="金额", value="¥1,200")],
                           inputs=[Checkbox(name="c", label="c")],
                           buttons=[Button(text="同意", action=TOKEN)], status="已同意 ✓"),
}


@pytest.mark.parametrize("name", sorted(CARDS))
def test_golden(name):
    rendered = render_card(CARDS[name])
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(json.dumps(rendered, ensure_ascii=False, indent=2) + "\n",
                        encoding="utf-8")
    assert rendered == json.loads(path.read_text(encoding="utf-8"))


def test_values_are_strings_and_buttons_carry_the_token():
    params = render_card(CARDS["dingtalk_form"])
    assert all(isinstance(v, str) for v in params.values())
    card = json.loads(params["card"])
    assert [b["actionId"] for b in card["buttons"]] == ["btn_0", "btn_1"]
    assert card["buttons"][0]["params"] == {"action": TOKEN}
    assert [i["type"] for i in card["inputs"]] == ["select", "checkbox", "date", "text"]


def test_final_card_drops_buttons_and_inputs():
    params = render_card(CARDS["dingtalk_final"])
    card = json.loads(params["card"])
    assert card["buttons"] == [] and card["inputs"] == []
    assert params["status"] == "已同意 ✓"
    assert "**已同意 ✓**" in params["markdown"]
