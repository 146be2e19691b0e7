"""Feishu card JSON 2.0 renderer: golden files (regenerate with FIELDBOT_UPDATE_GOLDEN=1)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cards import KV, Button, Card, Checkbox, DatePicker, Option, Select, TextInput
from cards.render_feishu import render_feishu

GOLDEN = Path(__file__).parent / "golden"

CARDS = {
    "simple": Card(title="拜访助手 FieldBot", text="你好 **world**\n第二行",
                   fields=[KV(label="你是 / You", value="ou_1")],
                   buttons=[Button(text="好的 / Got it", style="primary", action="tok.A")]),
    "form": Card(title="拜访记录", subtitle="请确认", color="orange",
                 fields=[KV(label="客户", value="星巴克"), KV(label="日期", value="2024-05-01")],
                 inputs=[Checkbox(name="ok", label="已拍门头照"),
                         Select(name="stage", label="阶段", placeholder="选择阶段",
                                options=[Option(value="lead", text="线索"),
                                         Option(value="won", text="成交")]),
                         DatePicker(name="next", label="下次拜访", initial="2024-05-08"),
                         TextInput(name="note", label="备注", required=True)],
                 buttons=[Button(text="保存", style="primary", action="tok.S"),
                          Button(text="作废", style="danger", action="tok.D")],
                 footer="FieldBot"),
    "status": Card(title="审批", color="green", fields=[KV(label="金额", value="¥100")],
                   inputs=[TextInput(name="why", label="理由")],
                   buttons=[Button(text="同意", action="tok.Y")], status="已同意 ✓"),
    "buttons": Card(title="选择", color="grey",
                    buttons=[Button(text="A", action="tok.1"), Button(text="B", action="tok.2"),
                             Button(text="C", style="danger", action="tok.3")]),
}


@pytest.mark.parametrize("name", sorted(CARDS))
def test_golden(name):
    rendered = render_feishu(CARDS[name])
    path = GOLDEN / f"feishu_{name}.json"
    text = json.dumps(rendered, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    if os.environ.get("FIELDBOT_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert json.loads(path.read_text(encoding="utf-8")) == rendered


def _buttons(node):
    if isinstance(node, dict):
        if node.get("tag") == "button":
            yield node
        for v in node.values():
            yield from _buttons(v)
    elif isinstance(node, list):
        for v in node:
            yield from _buttons(v)


def test_invariants():
    for name, card in CARDS.items():
        out = render_feishu(card)
        assert out["schema"] == "2.0" and out["config"]["update_multi"] is True
        buttons = list(_buttons(out))
        if card.status:
            assert buttons == [] and card.status in json.dumps(out, ensure_ascii=False)
            continue
        assert [b["behaviors"] for b in buttons] == [
            [{"type": "callback", "value": {"t": b.action}}] for b in card.buttons], name
        if card.inputs:
            assert all(b["form_action_type"] == "submit" for b in buttons)
