"""Golden-JSON tests of the WeCom template_card renderer (set UPDATE_GOLDEN=1 to rewrite)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cards import KV, Button, Card, Checkbox, DatePicker, Option, Select, TextInput, pack_action
from cards.render_wecom import (
    MAX_BUTTONS,
    MAX_KEY_BYTES,
    render_card,
    render_update,
    task_id_for,
)

GOLDEN = Path(__file__).parent / "golden"
SECRET = b"golden-secret"


def tok(name: str, **args) -> str:
    return pack_action(SECRET, name, **args)


CARDS = {
    "help": Card(title="拜访助手 FieldBot", text="发送 **帮助** 查看说明\n发送语音或照片",
                 fields=[KV(label="你是 / You", value="张三")],
                 buttons=[Button(text="好的 / Got it", style="primary",
                                 action=tok("help.ack"))]),
    "approval": Card(title="报销审批 #42", subtitle="张三 提交于 2024-05-01", color="orange",
                     fields=[KV(label="金额", value="¥1,280.00"), KV(label="类型", value="差旅"),
                             KV(label="客户", value="上海某某科技有限公司")],
                     text="出差上海拜访客户，含高铁与住宿。",
                     buttons=[Button(text="同意", style="primary",
                                     action=tok("approval.approve", id=42)),
                              Button(text="驳回", style="danger",
                                     action=tok("approval.reject", id=42)),
                              Button(text="稍后", action=tok("approval.later", id=42))],
                     footer="审批链：经理 → 财务", card_id="appr-42"),
    "final": Card(title="报销审批 #42", fields=[KV(label="金额", value="¥1,280.00")],
                  status="已同意 ✓", buttons=[Button(text="同意", action=tok("x"))]),
    "select_buttons": Card(title="拜访结果", inputs=[Select(
        name="outcome", label="结果", options=[Option(value="won", text="成交"),
                                               Option(value="follow", text="跟进"),
                                               Option(value="lost", text="流失")])],
        buttons=[Button(text="提交", style="primary", action=tok("visit.outcome", v=7)),
                 Button(text="取消", action=tok("visit.cancel", v=7))]),
    "select_dropdown": Card(title="选择客户", inputs=[
        Select(name="customer", label="客户",
               options=[Option(value=f"c{i}", text=f"客户{i}") for i in range(12)]),
        Checkbox(name="urgent", label="加急"), DatePicker(name="due", label="日期"),
        TextInput(name="note", label="备注")],
        buttons=[Button(text="确定", style="primary", action=tok("cust.pick"))]),
    "many_fields": Card(title="一个很长很长很长很长很长很长很长很长很长很长很长很长很长的标题",
                        fields=[KV(label=f"字段{i}", value=f"值{i}") for i in range(8)],
                        buttons=[Button(text=f"按钮{i}", action=tok("b", i=i))
                                 for i in range(8)]),
}


def _check(name: str, data: dict) -> None:
    path = GOLDEN / f"wecom_{name}.json"
    text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path.name} missing: run with UPDATE_GOLDEN=1 and review it"
    assert json.loads(path.read_text(encoding="utf-8")) == data


@pytest.mark.parametrize("name", sorted(CARDS))
def test_golden_card(name):
    _check(name, render_card(CARDS[name], task_id="out-1-1"))


@pytest.mark.parametrize("name", ["help", "final"])
def test_golden_update(name):
    _check(f"update_{name}", render_update(CARDS[name], task_id="out-1-1"))


def test_limits_hold():
    for card in CARDS.values():
        tpl = render_card(card, task_id="x" * 300)
        assert len(tpl.get("button_list", [])) <= MAX_BUTTONS
        assert len(tpl.get("horizontal_content_list", [])) <= 6
        assert all(len(b["key"].encode()) <= MAX_KEY_BYTES for b in tpl.get("button_list", []))
        assert len(tpl["task_id"].encode()) <= 128
        assert set(tpl["task_id"]) <= set(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-@")
        if card.status:
            assert "button_list" not in tpl
            assert card.status in tpl["sub_title_text"]


def test_option_buttons_round_trip_through_the_parser():
    from cards.render_wecom import split_key

    tpl = render_card(CARDS["select_buttons"], task_id="t")
    keys = [b["key"] for b in tpl["button_list"]]
    assert len(keys) == 4  # three options + cancel
    token, form = split_key(keys[1])
    assert token == tok("visit.outcome", v=7) and form == {"outcome": "follow"}
    assert split_key(keys[3]) == (tok("visit.cancel", v=7), {})


def test_task_id_is_stable_and_valid():
    assert task_id_for("out:12:1") == task_id_for("out:12:1") == "out_12_1"
    long = task_id_for("in:" + "9" * 200)
    assert len(long) <= 128 and long == task_id_for("in:" + "9" * 200)


def test_labels_fit_the_template_card_without_cut_words():
    """WeCom's limits (key names 10, buttons 10, replace_name 14 characters): a bilingual
    label keeps its Chinese half, a status ends at a word, never "客户 / Cust…"."""
    from cards.render_wecom import KEYNAME_CHARS, _fit, render_card, render_update

    assert _fit("客户 / Customer", KEYNAME_CHARS) == "客户"
    assert _fit("已同意 by 李经理 19:05", 14) == "已同意 by 李经理…"
    assert _fit("短标签", 10) == "短标签"
    card = Card(title="拜访记录草稿 / Draft visit", fields=[
        KV(label="客户 / Customer", value="华东精密零部件有限公司"),
        KV(label="来源 / Source", value="语音"), KV(label="建议跟进", value="2026-12-15")],
        buttons=[Button(text="保存并跟进 / Save + follow up", action=tok("x")),
                 Button(text="放弃 / Discard", style="danger", action=tok("y"))])
    tpl = render_card(card, "t")
    assert [k["keyname"] for k in tpl["horizontal_content_list"]] == ["客户", "来源", "建议跟进"]
    assert [b["text"] for b in tpl["button_list"]] == ["保存并跟进", "放弃"]
    done = render_update(card.model_copy(update={"status": "已同意 by 李经理 19:05"}), "t")
    tpl = done["template_card"]  # the whole card redrawn: outcome shown, buttons gone
    assert tpl["card_type"] == "text_notice" and "button_list" not in tpl
    assert "已同意 by 李经理 19:05" in tpl["emphasis_content"]["title"]
