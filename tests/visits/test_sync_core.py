"""One-tap sync through the real core (inbox → dispatcher → handler → outbox) on SQLite and
PostgreSQL: buffering, the draft card, save with follow-up, double save, who may save,
ambiguous customers, discard, ``我的拜访``. No platform: events go in through the ingress."""

from __future__ import annotations

import json

import pytest

from bot.event import CardAction, ChatRef
from cards import unpack_action
from simulator.seed import seed
from tests.core.test_dispatcher import build, close, make_event

pytestmark = pytest.mark.dates  # expectations relative to today: see tests/conftest.py

APP = "corp1"


@pytest.fixture
async def core(db_url, tmp_path):
    seed(db_url, {"wecom": APP})
    c = await build(db_url, tmp_path)
    yield c
    await close(c)


def say(n: int, text: str, sender: str = "zhangsan", chat: str = "zhangsan",
        group: bool = False):
    return make_event(f"m{n}", text, app_id=APP, sender=sender, message_id=f"msg{n}",
                      sender_name="", chat=ChatRef(id=chat, type="group" if group else "p2p"))


def tap(n: int, token: str, sender: str = "zhangsan", form: dict | None = None,
        chat: str = "zhangsan"):
    return make_event(f"t{n}", "", app_id=APP, sender=sender, kind="card_action", msg_type="",
                      chat=ChatRef(id=chat, type="p2p"),
                      action=CardAction(value=token, form=form or {},
                                        card_ref={"response_code": f"rc{n}"}))


def cards(core) -> list[dict]:
    return [r["message"] for r in core.outbox() if r["message"]["kind"] in ("card",
                                                                             "update_card")]


def sync_drafts(core) -> list[dict]:
    """The drafts ``同步`` made (each note naming a customer also gets its own "记为拜访？"
    card in a 1:1 chat; those are source 文字, not 聊天同步)."""
    return [c for c in cards(core) if c["kind"] == "card" and any(
        f["value"] == "聊天同步" for f in c["card"]["fields"])]


def buttons(card: dict, secret: bytes) -> dict[str, str]:
    return {b["text"]: b["action"] for b in card["card"]["buttons"]}


async def test_sync_save_with_follow_up_and_double_save(core):
    secret = core.dispatcher.secret
    chat = ["早上好", "今天拜访了华东精密，谈了框架续约", "周工说价格还要再压一压",
            "下周二带样品再去一次华东精密"]
    for n, text in enumerate(chat, 1):
        await core.ingress.submit(say(n, text), toast_wait=5)
    # every message is buffered, with sender and platform message id
    rows = core.sql("SELECT message_id, sender, chat_id FROM chat_messages ORDER BY id")
    assert [r[0] for r in rows] == ["msg1", "msg2", "msg3", "msg4"]
    assert all(r[1] == "zhangsan" and r[2] == "zhangsan" for r in rows)

    await core.ingress.submit(say(5, "同步"), toast_wait=5)
    (card,) = sync_drafts(core)
    body = card["card"]
    assert body["fields"][0]["value"] == "华东精密零部件有限公司"
    assert "今天拜访了华东精密" in body["text"] and "下周二带样品" in body["text"]
    assert "早上好" not in body["text"] and "周工说" not in body["text"]  # no customer named
    assert "张三" in body["text"]  # sender name from the identity
    kinds = {i["type"] for i in body["inputs"]}
    assert kinds == {"checkbox", "date"}
    date_in = next(i for i in body["inputs"] if i["type"] == "date")
    assert date_in["initial"]  # 下周二 was parsed into the suggested follow-up date
    btn = buttons(card, secret)
    save = btn["保存 / Save"]
    action = unpack_action(secret, save)
    assert action.name == "visit.save" and action.args["src"] == "chat_sync"

    new, toast = await core.ingress.submit(
        tap(1, save, form={"follow_up": True, "follow_up_on": "2031-01-02 +0800"}),
        toast_wait=5)
    assert toast is not None and toast.kind == "success", toast
    visits = core.sql("SELECT customer_id, deal_id, source, evidence, follow_up_on, user_id"
                      " FROM visits")
    assert len(visits) == 1
    cid, deal_id, source, evidence, follow_on, user_id = visits[0]
    assert source == "chat_sync" and deal_id is not None and user_id is not None
    evidence = json.loads(evidence) if isinstance(evidence, str) else evidence
    assert [m["message_id"] for m in evidence["messages"]] == ["msg2", "msg4"]
    assert str(follow_on).startswith("2031-01-02")
    (task,) = core.sql("SELECT customer_id, deal_id, due_on, title FROM tasks")
    assert task[0] == cid and task[1] == deal_id and str(task[2]).startswith("2031-01-02")
    (cust_at,) = core.sql("SELECT last_activity_at FROM customers WHERE id=:i", i=cid)[0]
    (deal_stage, deal_at) = core.sql("SELECT stage, last_activity_at FROM deals WHERE id=:i",
                                     i=deal_id)[0]
    assert deal_stage not in ("won", "lost")
    assert str(cust_at)[:16] == str(deal_at)[:16]  # both touched by the save
    (update,) = [c for c in cards(core) if c["kind"] == "update_card"]
    assert update["card"]["status"] == "已保存 ✓"
    assert ("visit.create", "wecom:zhangsan") in [a[:2] for a in core.audit()]

    # a second tap on the same card: 已处理, still one visit
    _new, toast = await core.ingress.submit(tap(2, save), toast_wait=5)
    assert toast is not None and "已处理" in toast.text
    assert len(core.sql("SELECT id FROM visits")) == 1
    assert len(core.sql("SELECT id FROM tasks")) == 1


async def test_only_requester_saves_and_discard(core):
    secret = core.dispatcher.secret
    await core.ingress.submit(say(1, "刚从恒信电子出来", chat="grp1", group=True), toast_wait=5)
    await core.ingress.submit(say(2, "sync", chat="grp1", group=True), toast_wait=5)
    (card,) = sync_drafts(core)
    btn = buttons(card, secret)
    _new, toast = await core.ingress.submit(tap(1, btn["保存 / Save"], sender="lisi",
                                                chat="grp1"), toast_wait=5)
    assert toast is not None and toast.kind == "warning"
    assert core.sql("SELECT id FROM visits") == []
    _new, toast = await core.ingress.submit(tap(2, btn["放弃 / Discard"], chat="grp1"),
                                            toast_wait=5)
    assert toast is not None and "放弃" in toast.text
    (update,) = [c for c in cards(core) if c["kind"] == "update_card"]
    assert "放弃" in update["card"]["status"]
    assert core.sql("SELECT id FROM visits") == []
    # saving without ticking follow-up makes no task
    await core.ingress.submit(say(3, "sync", chat="grp1", group=True), toast_wait=5)
    card = sync_drafts(core)[-1]
    _new, toast = await core.ingress.submit(tap(3, buttons(card, secret)["保存 / Save"],
                                                chat="grp1"), toast_wait=5)
    assert toast is not None and toast.kind == "success"
    assert len(core.sql("SELECT id FROM visits")) == 1
    assert core.sql("SELECT id FROM tasks") == []


async def test_ambiguous_customer_asks(core):
    secret = core.dispatcher.secret
    await core.ingress.submit(say(1, "上午在恒信电子，下午去金陵化工"), toast_wait=5)
    await core.ingress.submit(say(2, "同步"), toast_wait=5)
    (card,) = sync_drafts(core)
    (select,) = [i for i in card["card"]["inputs"] if i["type"] == "select"]
    names = {o["text"] for o in select["options"]}
    assert names == {"苏州工业园区恒信电子有限公司", "南京金陵化工集团"}
    save = buttons(card, secret)["保存 / Save"]
    _new, toast = await core.ingress.submit(tap(1, save), toast_wait=5)
    assert toast is not None and "选择客户" in toast.text  # nothing picked yet
    _new, toast = await core.ingress.submit(tap(2, save, form={"customer": "999"}),
                                            toast_wait=5)
    assert toast is not None and toast.kind == "error"  # not a candidate we offered
    pick = next(o["value"] for o in select["options"] if o["text"] == "南京金陵化工集团")
    _new, toast = await core.ingress.submit(tap(3, save, form={"customer": pick}),
                                            toast_wait=5)
    assert toast is not None and toast.kind == "success"
    assert core.sql("SELECT customer_id FROM visits") == [(int(pick),)]


async def test_no_customer_and_my_visits(core):
    await core.ingress.submit(say(1, "今天天气不错"), toast_wait=5)
    await core.ingress.submit(say(2, "同步"), toast_wait=5)
    msg = core.outbox()[-1]["message"]
    assert msg["kind"] == "text" and "没有提到客户" in msg["text"]
    await core.ingress.submit(say(3, "我的拜访"), toast_wait=5)
    assert "还没有拜访记录" in core.outbox()[-1]["message"]["text"]

    await core.ingress.submit(say(4, "拜访了西子智能，明天再联系"), toast_wait=5)
    await core.ingress.submit(say(5, "同步"), toast_wait=5)
    card = sync_drafts(core)[-1]
    save = buttons(card, core.dispatcher.secret)["保存并跟进"]
    _new, toast = await core.ingress.submit(tap(1, save), toast_wait=5)
    assert toast is not None and toast.kind == "success"
    (due,) = core.sql("SELECT due_on FROM tasks")[0]
    assert due is not None  # 明天 from the message

    await core.ingress.submit(say(6, "visits"), toast_wait=5)
    listing = core.outbox()[-1]["message"]
    assert listing["kind"] == "card"
    assert "杭州西子智能科技有限公司" in listing["card"]["text"]
    assert "聊天同步" in listing["card"]["text"] and "1 条消息" in listing["card"]["text"]


def texts_of(core) -> list[str]:
    return [r["message"]["text"] for r in core.outbox() if r["message"]["kind"] == "text"]


async def test_a_note_naming_a_customer_offers_to_file_it(core):
    """Text no command claims: "记为拜访？" when it names a customer (one tap files it), the
    echo when it does not, and nothing of the kind in a group."""
    secret = core.dispatcher.secret
    await core.ingress.submit(say(1, "拜访了华东精密，谈了秋季订货，明天再联系"), toast_wait=5)
    (card,) = [c for c in cards(core) if c["kind"] == "card"]
    body = card["card"]
    assert body["title"].startswith("记为拜访？")
    assert body["fields"][0]["value"] == "华东精密零部件有限公司"
    assert "秋季订货" in body["text"]
    assert any(f["value"] == "文字" for f in body["fields"])  # the source, by its label
    save = buttons(card, secret)["保存 / Save"]
    _new, toast = await core.ingress.submit(tap(1, save), toast_wait=5)
    assert toast is not None and toast.kind == "success", toast
    assert core.sql("SELECT source FROM visits") == [("text",)]

    await core.ingress.submit(say(2, "今天天气不错"), toast_wait=5)
    assert texts_of(core)[-1].startswith("收到文字：今天天气不错")
    await core.ingress.submit(say(3, "刚从恒信电子出来", chat="grp9", group=True), toast_wait=5)
    assert len([c for c in cards(core) if c["kind"] == "card"]) == 1


async def test_sync_skips_commands_and_files_one_draft_per_customer(core):
    chat = ["报价 华东精密 86000", "上午见了恒信电子的采购", "下午在金陵化工谈防爆设备",
            "金陵化工下周一要方案"]
    for n, text in enumerate(chat, 1):
        await core.ingress.submit(say(n, text, chat="grp2", group=True), toast_wait=5)
    await core.ingress.submit(say(9, "同步", chat="grp2", group=True), toast_wait=5)
    drafts = sync_drafts(core)
    assert len(drafts) == 2
    by_customer = {d["card"]["fields"][0]["value"]: d["card"]["text"] for d in drafts}
    assert set(by_customer) == {"苏州工业园区恒信电子有限公司", "南京金陵化工集团"}
    assert "采购" in by_customer["苏州工业园区恒信电子有限公司"]
    assert "防爆" in by_customer["南京金陵化工集团"] and "方案" in by_customer["南京金陵化工集团"]
    assert all("报价" not in t and "采购" not in by_customer["南京金陵化工集团"]
               for t in by_customer.values())
    assert all("张三" in t for t in by_customer.values())  # a name, not "zhangsan"
    secret = core.dispatcher.secret
    a, b = (unpack_action(secret, buttons(d, secret)["保存 / Save"]).args["d"] for d in drafts)
    assert a != b  # two drafts, saved separately


async def test_alerts_on_demand_are_the_askers_own(core):
    await core.ingress.submit(say(1, "提醒"), toast_wait=5)
    sent = [c["card"] for c in cards(core) if c["kind"] == "card"]
    titles = [c["title"] for c in sent]
    assert any(t.startswith("商机停滞提醒") for t in titles), titles
    assert any("逾期" in t for t in titles), titles
    mine = {n for (n,) in core.sql(
        "SELECT c.name FROM customers c JOIN users u ON u.id = c.owner_id WHERE u.name = '张三'")}
    for card in sent:
        lines = [ln for ln in card["text"].splitlines() if ln.strip()]
        assert lines and all(any(n in ln for n in mine) for ln in lines), card["text"]
        assert any(b["text"].endswith("已跟进") for b in card["buttons"])
    assert ("alerts.on_demand", "wecom:zhangsan") in [a[:2] for a in core.audit()]


async def test_discount_needs_an_open_deal(core):
    """``折扣 浦江机电 10%``: 浦江机电's only deal is won — no "金额 ¥0" request, a clear
    answer; a customer with one open deal gets the request off that deal's amount (several:
    it asks which, tests/approvals/test_e2e.py)."""
    await core.ingress.submit(say(1, "折扣 浦江机电 10%"), toast_wait=5)
    assert "没有进行中的商机" in texts_of(core)[-1]
    assert core.sql("SELECT count(*) FROM approval_requests") == [(0,)]
    await core.ingress.submit(say(2, "折扣 西子智能 10%"), toast_wait=5)  # one open deal
    (card,) = [c["card"] for c in cards(core) if c["kind"] == "card"]
    assert "¥0" not in json.dumps(card, ensure_ascii=False)
    (amount,), = core.sql("SELECT amount FROM approval_requests")
    assert amount == 320_000


async def test_digest_on_demand_for_managers_only(core):
    await core.ingress.submit(say(1, "日报"), toast_wait=5)
    assert "日报发给经理" in texts_of(core)[-1]
    await core.ingress.submit(say(2, "日报", sender="lijingli", chat="lijingli"), toast_wait=5)
    (card,) = [c["card"] for c in cards(core) if c["kind"] == "card"]
    assert card["title"].startswith("团队日报")
    fields = {f["label"]: f["value"] for f in card["fields"]}
    assert {"本月应收", "逾期未收", "停滞商机"} <= set(fields)


async def test_alert_action_redraws_its_card_in_place(core):
    """已跟进 on an alert card: stored and audited as before, and the same card is redrawn —
    that item's buttons gone, the outcome on the card; the second item's tap redraws the
    redrawn card, and the last one makes it final."""
    secret = core.dispatcher.secret
    await core.ingress.submit(say(1, "提醒"), toast_wait=5)
    stale = next(c for c in cards(core) if c["card"]["title"].startswith("商机停滞提醒"))
    first = stale["card"]["buttons"][0]
    assert first["text"].endswith("已跟进")
    args = unpack_action(secret, first["action"]).args
    _new, toast = await core.ingress.submit(tap(1, first["action"]), toast_wait=5)
    assert toast is not None and toast.kind == "success"
    (upd,) = [c for c in cards(core) if c["kind"] == "update_card"]
    redrawn = upd["card"]
    assert redrawn["card_id"] == stale["card"]["card_id"]
    left = [unpack_action(secret, b["action"]).args for b in redrawn["buttons"]]
    assert all((a["k"], a["e"]) != (args["k"], args["e"]) for a in left)
    assert "✓ 已跟进" in redrawn["text"] and "张三" in redrawn["text"]
    n = 2
    while redrawn["buttons"]:  # tap through the rest: each redraw builds on the last
        _new, _t = await core.ingress.submit(tap(n, redrawn["buttons"][0]["action"]),
                                             toast_wait=5)
        redrawn = [c for c in cards(core) if c["kind"] == "update_card"][-1]["card"]
        n += 1
    assert redrawn["status"].startswith("已处理")
    assert redrawn["text"].count("✓ ") == n - 1


async def test_alerts_reach_each_person_on_their_platform(db_url, tmp_path):
    """A person on two platforms: alerts go where they chose (``提醒到 飞书``), else where they
    last wrote to the bot from, else their first identity."""
    from sqlmodel.ext.asyncio.session import AsyncSession

    from jobs.targets import load_org
    from storage.db import async_engine

    seed(db_url, {"wecom": APP, "feishu": "cli_x"})
    core = await build(db_url, tmp_path)
    try:
        async def target(name: str) -> str:
            eng = async_engine(db_url)
            try:
                async with AsyncSession(eng) as s:
                    org = await load_org(s)
                    uid = next(u.id for u in org.users.values() if u.name == name)
                    return org.user_targets[uid].platform
            finally:
                await eng.dispose()

        assert await target("张三") == "wecom"  # never wrote: the first identity
        await core.ingress.submit(say(1, "你好", sender="zhangsan"), toast_wait=5)
        await core.ingress.submit(make_event("f1", "早上好", platform="feishu", app_id="cli_x",
                                             sender="ou_zhangsan", message_id="fm1",
                                             chat=ChatRef(id="ou_zhangsan", type="p2p")),
                                  toast_wait=5)
        assert await target("张三") == "feishu"  # wrote from Feishu last
        await core.ingress.submit(say(2, "提醒到 企业微信"), toast_wait=5)
        assert "企业微信" in texts_of(core)[-1]
        assert await target("张三") == "wecom"  # chosen beats last used
        await core.ingress.submit(say(3, "提醒到 钉钉"), toast_wait=5)
        assert "还没有绑定钉钉" in texts_of(core)[-1]
        await core.ingress.submit(say(4, "提醒到 自动"), toast_wait=5)
        assert await target("张三") == "wecom"  # auto again: the WeCom message was the last
        assert ("prefs.alerts_platform", "wecom:zhangsan") in [a[:2] for a in core.audit()]
    finally:
        await close(core)


async def test_new_customer_reveals_nothing_outside_ones_scope(core):
    """``新客户 <name>`` of an existing customer: its owner (or their manager) is told it
    exists; a rep of another team gets the same answer as for any new name."""
    name = "华东精密零部件有限公司"  # 张三's, 华东区
    await core.ingress.submit(say(1, f"新客户 {name}"), toast_wait=5)
    assert "已存在" in texts_of(core)[-1]
    await core.ingress.submit(say(2, f"新客户 {name}", sender="wangwu", chat="wangwu"),
                              toast_wait=5)
    await core.ingress.submit(say(3, "新客户 明辉五金", sender="wangwu", chat="wangwu"),
                              toast_wait=5)
    mine = [r["message"] for r in core.outbox() if r["target"]["id"] == "wangwu"]
    assert [m["kind"] for m in mine] == ["card", "card"]  # both: the confirmation card
    assert all("已存在" not in json.dumps(m, ensure_ascii=False) for m in mine)


async def test_a_customer_named_by_sound_is_offered_with_a_check(core):
    """A note that writes the customer in pinyin (as speech-to-text or a rep's keyboard may)
    still offers "记为拜访？" for the right customer, and the draft says the match was by sound,
    so the rep checks the name before the one tap."""
    await core.ingress.submit(say(1, "下午去了 huadong jingmi，谈了秋季订货"), toast_wait=5)
    (card,) = [c for c in cards(core) if c["kind"] == "card"]
    value = card["card"]["fields"][0]["value"]
    assert value.startswith("华东精密零部件有限公司") and "按读音识别" in value, value
