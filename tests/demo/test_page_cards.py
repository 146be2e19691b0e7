"""The demo page draws every element of every card the bot sends, from each platform's own
payload: each renderer's output goes through the simulator's reading of that platform's card
(what the page draws), and every input must come out drawable — or, on WeCom, which cannot
draw them, be named in the text or carried by its buttons."""

from __future__ import annotations

import pytest

from cards import KV, Button, Card, Checkbox, DatePicker, Option, Select, TextInput, pack_action
from cards.render_dingtalk import render_card as render_dingtalk
from cards.render_feishu import render_feishu
from cards.render_wecom import render_card as render_wecom
from simulator.server import dingtalk_card, feishu_card, wecom_card

SECRET = b"k" * 32
DRAWABLE = {"select", "text", "date", "checkbox"}


def tok(name: str) -> str:
    return pack_action(SECRET, name)


def every_card() -> dict[str, Card]:
    """One of each shape the handlers build (help, draft visit with an ambiguous customer,
    the reject form, the request form, an alert card, a final card)."""
    many = [Option(value=str(i), text=t) for i, t in enumerate(
        ["华东精密", "恒信电子", "金陵化工", "西子智能", "港城物流", "浦江机电", "南山创新",
         "珠江食品", "松湖精工", "顺德家电", "鹭岛医疗", "横琴新能源"])]
    return {
        "help": Card(title="拜访助手 FieldBot · 帮助", text="• `同步` …",
                     buttons=[Button(text="好的 / Got it", action=tok("help.ack"))]),
        "draft": Card(title="拜访记录草稿 / Draft visit", fields=[KV(label="来源", value="语音")],
                      inputs=[Select(name="customer", label="客户 / Customer", options=many[:3]),
                              Checkbox(name="follow_up", label="需跟进", checked=True),
                              DatePicker(name="follow_up_on", label="跟进日期",
                                         initial="2026-12-15")],
                      buttons=[Button(text="保存 / Save", style="primary", action=tok("s")),
                               Button(text="放弃 / Discard", action=tok("d"))]),
        "reject": Card(title="报价审批 #1", color="red",
                       inputs=[Select(name="reason", label="驳回原因 / Reason",
                                      options=many[:4]),
                               TextInput(name="reason_text", label="补充说明 / Details",
                                         multiline=True)],
                       buttons=[Button(text="确认驳回 / Reject", style="danger",
                                       action=tok("r")),
                                Button(text="返回 / Back", action=tok("b"))]),
        "form": Card(title="发起审批 / new request",
                     inputs=[Select(name="kind", label="类型 / Type", options=many[:4]),
                             TextInput(name="customer", label="客户 / Customer", required=True),
                             TextInput(name="amount", label="金额或折扣 / Amount or 15%")],
                     buttons=[Button(text="下一步 / Next", style="primary", action=tok("f"))]),
        "many_options": Card(title="选择客户", inputs=[
            Select(name="customer", label="客户", options=many)],
            buttons=[Button(text="确定", action=tok("c"))]),
        "alert": Card(title="商机停滞提醒 · 2 个", color="orange", text="① …\n② …",
                      buttons=[Button(text="①已跟进", style="primary", action=tok("a1")),
                               Button(text="①延后7天", action=tok("a2"))]),
        "final": Card(title="报价审批 #1", status="已同意 by 李经理 10:05", text="流程 …"),
    }


def drawn(platform: str, card: Card) -> dict:
    if platform == "wecom":
        return wecom_card(render_wecom(card, "t1"))
    if platform == "dingtalk":
        return dingtalk_card(render_dingtalk(card))
    return feishu_card(render_feishu(card))


@pytest.mark.parametrize("platform", ["wecom", "dingtalk", "feishu"])
@pytest.mark.parametrize("name", list(every_card()))
def test_every_element_is_drawn(platform, name):
    card = every_card()[name]
    page = drawn(platform, card)
    assert page["title"].startswith(card.title.split(" / ")[0][:8])
    assert all(i["type"] in DRAWABLE for i in page["inputs"]), page["inputs"]
    names = {i["name"] for i in page["inputs"]}
    if card.status:
        assert not page["buttons"] and card.status.split()[0] in (page["status"] + page["text"])
        return
    assert len(page["buttons"]) >= 1
    for inp in card.inputs:
        if platform != "wecom":
            assert inp.name in names, (inp.name, page["inputs"])
            got = next(i for i in page["inputs"] if i["name"] == inp.name)
            if isinstance(inp, Select):
                assert [o["value"] for o in got["options"]] == [o.value for o in inp.options]
            if isinstance(inp, TextInput):
                assert got["multiline"] == inp.multiline
            continue
        # WeCom: a select becomes option buttons or its one native dropdown; the rest are
        # named in the text as "not available on WeCom"
        if isinstance(inp, Select):
            as_buttons = all(any(o.text[:4] in b["text"] for b in page["buttons"])
                             for o in inp.options)
            assert as_buttons or inp.name in names, (inp.name, page)
        else:
            assert inp.label.split(" / ")[0] in page["text"], (inp.label, page["text"])
    assert page["look"] == platform
