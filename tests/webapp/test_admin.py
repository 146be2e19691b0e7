"""Admin console: only admins get in; rule edits are validated in words, saved as new
versions with an audit row, read by the jobs' own loader; the dry-run runs the real scans and
writes nothing; restore; users/teams with their refusals."""

from __future__ import annotations

import html
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config import load_settings
from jobs.runner import AlertJobs
from storage import approvals as sm
from storage.db import async_engine
from webapp.admin_org import Refused, check_webhook
from webapp.rules_check import validate

GETS = ["/app/admin", "/app/admin/rules/alerts", "/app/admin/rules/approvals",
        "/app/admin/rules/alerts/versions", "/app/admin/audit", "/app/admin/users",
        "/app/admin/users/1", "/app/admin/teams"]
POSTS = ["/app/admin/rules/alerts", "/app/admin/rules/alerts/preview",
         "/app/admin/rules/approvals/preview", "/app/admin/rules/alerts/restore/1",
         "/app/admin/users", "/app/admin/users/1", "/app/admin/teams", "/app/admin/teams/1",
         "/app/admin/chats/1"]
COUNTED = ("rules", "outbox", "alert_state", "audit_log", "customer_health", "job_runs")


def counts(web) -> dict[str, int]:
    return {t: web.sql(f"SELECT count(*) FROM {t}")[0][0] for t in COUNTED}  # noqa: S608


def uid(web, name: str) -> int:
    return web.sql("SELECT id FROM users WHERE name = :n", n=name)[0][0]


def preview_counts(body: str) -> dict[str, tuple[int, int]]:
    rows = re.findall(r'data-rule="(\w+)"[^>]*>\s*<td>[^<]*</td>\s*<td class="before">(\d+)'
                      r'</td>\s*<td class="after"><b>(\d+)</b>', body)
    return {r: (int(a), int(b)) for r, a, b in rows}


async def admin(web):
    c = await web.client().login("admin")
    await c.page("/app/admin/rules/alerts")
    return c


@pytest.mark.parametrize("key", ["zhangsan", "lijingli"])
async def test_non_admins_are_refused_everywhere(web, key):
    c = await web.client().login(key)
    for path in GETS:
        body = await c.page(path, status=403)
        assert "没有权限" in body
    for path in POSTS:
        r = await c.post(path, {"mode": "form", "stale.yellow_days": "1", "role": "admin",
                                "name": "x"})
        assert r.status == 403, path
    assert web.sql("SELECT count(*) FROM rules") == [(0,)]
    assert web.sql("SELECT count(*) FROM users WHERE role = 'admin'") == [(1,)]
    assert web.sql("SELECT count(*) FROM teams") == [(2,)]


BAD_FORMS = [
    ({"health.weights.volume": "25"}, "健康分权重合计必须为 100%（现在 95%）"),
    ({"stale.yellow_days": "-3"}, "停滞黄色阈值（天）：不能小于 1（现在 -3）"),
    ({"stale.yellow_days": "20", "stale.red_days": "15"},
     "停滞红色阈值必须大于黄色阈值（现在 红 15 天 ≤ 黄 20 天）"),
    ({"digest.time": "25:00"}, "日报发送时间（HH:MM）：时间格式应为 HH:MM"),
    ({"stale.yellow_days": "abc"}, "停滞黄色阈值（天）：必须是整数（现在「abc」）"),
    ({"stale.per_stage.negotiation.yellow_days": "5"}, "谈判阶段：黄色和红色阈值要同时填写"),
    ({"routes.0.to": "owner, boss"}, "提醒路由 第 1 条 · to.1：必须是以下之一"),
    ({"overdue.ladder": "7, 0"}, "逾期提醒阶梯（天，逗号分隔）：ladder needs positive day"),
]


async def test_invalid_alert_rules_are_explained_and_not_saved(web):
    c = await admin(web)
    for fields, message in BAD_FORMS:
        r = await c.post("/app/admin/rules/alerts", {"mode": "form", "base_version": "0",
                                                     **fields})
        body = await r.text()
        assert r.status == 400, fields
        assert message in body, (fields, re.findall(r'<li data-field[^>]*>([^<]*)', body))
        assert "Traceback" not in body
        # the form comes back with what the admin typed
        for path, value in fields.items():
            assert f'name="{path}" value="{value}"' in body
    r = await c.post("/app/admin/rules/alerts", {"mode": "json", "base_version": "0",
                                                 "json": '{"stale": {"yellow_days": 10,}}'})
    assert r.status == 400 and "JSON 格式错误：第 1 行" in await r.text()
    r = await c.post("/app/admin/rules/approvals",
                     {"mode": "json", "base_version": "0",
                      "json": '{"remind_after_h": 4, "remind_afterh": 5}'})
    assert r.status == 400 and "remind_afterh：不认识的字段" in await r.text()
    r = await c.post("/app/admin/rules/approvals",
                     {"mode": "form", "base_version": "0", "work_start": "9点"})
    assert r.status == 400 and "上班时间：时间格式应为 HH:MM" in await r.text()
    assert web.sql("SELECT count(*) FROM rules") == [(0,)]
    assert web.sql("SELECT count(*) FROM audit_log WHERE action LIKE 'rules.%'") == [(0,)]


async def test_valid_save_is_a_new_version_the_jobs_read(web):
    c = await admin(web)
    r = await c.post("/app/admin/rules/alerts", {"mode": "form", "base_version": "0",
                                                 "stale.yellow_days": "12"})
    assert r.status == 200 and r.url.path == "/app/admin/rules/alerts"
    assert "已保存为版本 1" in await r.text()
    me = uid(web, "系统管理员")
    assert web.sql("SELECT key, version, created_by FROM rules") == [("alerts", 1, me)]
    audit = web.sql("SELECT actor_id, entity_id, detail FROM audit_log "
                    "WHERE action = 'rules.update'")
    assert len(audit) == 1 and audit[0][:2] == (me, "alerts:1")
    assert json.loads(audit[0][2])["changes"] == ["stale.yellow_days: 20 → 12"]
    # the scheduler's own loader sees it
    engine = async_engine(web.database_url)
    try:
        jobs = AlertJobs(engine, load_settings(database_url=web.database_url), b"k" * 32)
        rules = await jobs.load_rules()
        assert rules.stale.yellow_days == 12 and rules.stale.red_days == 30
    finally:
        await engine.dispose()
    # a save against an older version is refused, not a silent overwrite
    r = await c.post("/app/admin/rules/alerts", {"mode": "form", "base_version": "0",
                                                 "stale.yellow_days": "14"})
    assert r.status == 409 and "规则已被他人修改" in await r.text()
    # nothing changed → no new version
    r = await c.post("/app/admin/rules/alerts", {"mode": "form", "base_version": "1",
                                                 "stale.yellow_days": "12"})
    assert r.status == 200 and "没有变化" in await r.text()
    assert web.sql("SELECT count(*) FROM rules") == [(1,)]
    # approvals: the JSON editor, read back through the approval engine's loader
    page = await c.page("/app/admin/rules/approvals")
    assert 'id="rules-json"' in page
    r = await c.post("/app/admin/rules/approvals",
                     {"mode": "form", "base_version": "0", "chains.0.when.amount_lt": "100000",
                      "chains.1.when.amount_gte": "100000"})
    assert r.status == 200, await r.text()
    engine = async_engine(web.database_url)
    try:
        from sqlmodel.ext.asyncio.session import AsyncSession
        async with AsyncSession(engine) as s:
            current = await sm.current_rules(s, {})
        assert current.version == 1
        assert current.chain_for("quote", 86_000, None) == ["manager"]
        assert current.chain_for("quote", 120_000, None) == ["manager", "vp"]
    finally:
        await engine.dispose()


async def test_preview_runs_the_real_scans_and_writes_nothing(web):
    c = await admin(web)
    tags = web.sql("SELECT id, tags FROM customers ORDER BY id")
    before = counts(web)
    r = await c.post("/app/admin/rules/alerts/preview",
                     {"mode": "form", "base_version": "0", "stale.yellow_days": "10",
                      "dormant.days": "30"})
    body = await r.text()
    assert r.status == 200, body
    got = preview_counts(body)
    # seed: open deals idle 25/35/48/21/40 days (≥ 20) plus 16 and 14 (≥ 10)
    assert got["stale"] == (5, 7)
    assert got["dormant"] == (0, 4)  # customers idle 35/48/60/40 days
    assert got["overdue"][0] == got["overdue"][1] > 0
    assert "stale: 5 → 7" in body and "自动化产线改造" in body
    assert 'name="stale.yellow_days" value="10"' in body  # the edit survives the preview
    assert counts(web) == before
    assert web.sql("SELECT id, tags FROM customers ORDER BY id") == tags
    # health grades depend on the weights
    r = await c.post("/app/admin/rules/alerts/preview",
                     {"mode": "form", "base_version": "0", "health.grade_a": "40",
                      "health.grade_b": "20"})
    body = await r.text()
    a = re.search(r'data-grade="A">A (\d+) → (\d+)', body)
    assert a and int(a.group(2)) > int(a.group(1))
    # approvals: where sample requests would go, for a chosen requester
    r = await c.post("/app/admin/rules/approvals/preview",
                     {"mode": "form", "base_version": "0", "chains.0.when.amount_lt": "100000",
                      "chains.1.when.amount_gte": "100000",
                      "requester_id": str(uid(web, "张三"))})
    body = await r.text()
    assert r.status == 200 and "申请人 Requester: <b>张三</b>" in body
    row = re.search(r"报价 ¥86,000</td>\s*<td class=\"before\">([^<]*)</td>\s*"
                    r"<td class=\"after\">([^<]*)<", body)
    assert row and row.group(1) == "李经理（manager） → 王总（vp）"
    assert row.group(2).strip() == "李经理（manager）"
    assert counts(web) == before
    # a broken candidate cannot be previewed either
    r = await c.post("/app/admin/rules/alerts/preview", {"mode": "form", "base_version": "0",
                                                         "stale.red_days": "5"})
    assert r.status == 400 and "停滞红色阈值必须大于黄色阈值" in await r.text()


async def test_versions_and_restore(web):
    c = await admin(web)
    for base, days in (("0", "10"), ("1", "15")):
        r = await c.post("/app/admin/rules/alerts", {"mode": "form", "base_version": base,
                                                     "stale.yellow_days": days})
        assert r.status == 200
    page = await c.page("/app/admin/rules/alerts/versions")
    assert "stale.yellow_days: 10 → 15" in page and "stale.yellow_days: 20 → 10" in page
    # routes are edited per field and diffed per field
    r = await c.post("/app/admin/rules/alerts", {"mode": "form", "base_version": "2",
                                                 "routes.0.to": "owner, team_chat",
                                                 "routes.0.team_id": "1"})
    assert r.status == 200
    page = html.unescape(await c.page("/app/admin/rules/alerts/versions"))
    assert 'routes.0.to: ["owner", "manager"] → ["owner", "team_chat"]' in page
    assert "routes.0.team_id: null → 1" in page
    r = await c.post("/app/admin/rules/alerts/restore/1")
    assert r.status == 200 and "已恢复为新版本 4" in await r.text()
    rows = web.sql("SELECT version, value FROM rules WHERE key = 'alerts' ORDER BY version")
    assert [v for v, _ in rows] == [1, 2, 3, 4] and rows[3][1] == rows[0][1]
    assert web.sql("SELECT entity_id FROM audit_log WHERE action = 'rules.restore'") == [
        ("alerts:4",)]
    r = await c.post("/app/admin/rules/alerts/restore/99")
    assert r.status == 404
    overview = await c.page("/app/admin")
    assert re.search(r'data-key="alerts">.*?<td class="version">4</td>', overview, re.S)


async def test_users_roles_and_refusals(web):
    c = await admin(web)
    lisi, me = uid(web, "李四"), uid(web, "系统管理员")
    zhang, li = uid(web, "张三"), uid(web, "李经理")
    team = web.sql("SELECT team_id, manager_id FROM users WHERE id = :i", i=lisi)[0]
    page = await c.page("/app/admin/users")
    assert "wecom:lisi" in page
    form = {"name": "李四", "role": "manager", "team_id": str(team[0]),
            "manager_id": str(team[1]), "active": "on"}
    r = await c.post(f"/app/admin/users/{lisi}", form)
    assert r.status == 200
    assert web.sql("SELECT role FROM users WHERE id = :i", i=lisi) == [("manager",)]
    audit = web.sql("SELECT actor_id, detail FROM audit_log WHERE action = 'user.update' "
                    "AND entity_id = :e", e=str(lisi))
    assert audit and audit[0][0] == me
    assert json.loads(audit[0][1])["changes"] == {"role": ["rep", "manager"]}
    # the last admin keeps the role
    r = await c.post(f"/app/admin/users/{me}", {"name": "系统管理员", "role": "rep",
                                                "active": "on"})
    assert r.status == 400 and "最后一位管理员" in await r.text()
    r = await c.post(f"/app/admin/users/{me}", {"name": "系统管理员", "role": "admin"})
    assert r.status == 400 and "最后一位管理员" in await r.text()  # deactivating
    assert web.sql("SELECT role, active FROM users WHERE id = :i", i=me) == [("admin", 1)]
    # own manager; a cycle
    r = await c.post(f"/app/admin/users/{zhang}", {"name": "张三", "role": "rep",
                                                   "manager_id": str(zhang), "active": "on"})
    assert r.status == 400 and "不能把用户设为自己的上级" in await r.text()
    r = await c.post(f"/app/admin/users/{li}", {"name": "李经理", "role": "manager",
                                                "manager_id": str(zhang), "active": "on"})
    assert r.status == 400 and "循环" in await r.text()
    r = await c.post(f"/app/admin/users/{zhang}", {"name": "张三", "role": "boss",
                                                   "active": "on"})
    assert r.status == 400 and "角色必须是" in await r.text()
    # a second admin may then step down
    r = await c.post("/app/admin/users", {"name": "新管理员", "role": "admin"})
    assert r.status == 200
    assert web.sql("SELECT role FROM users WHERE name = '新管理员'") == [("admin",)]
    assert web.sql("SELECT count(*) FROM audit_log WHERE action = 'user.create'") == [(1,)]
    # teams: create, duplicate name refused, rename audited
    r = await c.post("/app/admin/teams", {"name": "华北区", "region": "north",
                                          "manager_id": str(li)})
    assert r.status == 200
    r = await c.post("/app/admin/teams", {"name": "华北区"})
    assert r.status == 400 and "已有名为「华北区」的团队" in await r.text()
    tid = web.sql("SELECT id FROM teams WHERE name = '华北区'")[0][0]
    r = await c.post(f"/app/admin/teams/{tid}", {"name": "华北大区", "region": "north",
                                                 "chat_id": "999"})
    assert r.status == 400 and "机器人还没见过" in await r.text()
    r = await c.post(f"/app/admin/teams/{tid}", {"name": "华北大区", "region": "north"})
    assert r.status == 200
    assert web.sql("SELECT name, manager_id FROM teams WHERE id = :i", i=tid) == [
        ("华北大区", None)]
    assert web.sql("SELECT count(*) FROM audit_log WHERE action LIKE 'team.%'") == [(2,)]
    assert "华北大区" in await c.page("/app/admin/audit?entity=team")
    assert "较新 Newer" in await c.page("/app/admin/audit?page=2&action=user.")
    assert "第 1 页" in await c.page("/app/admin/audit?page=abc")
    filtered = await c.page("/app/admin/audit?action=user.")
    assert 'data-action="user.update"' in filtered
    assert 'data-action="team.create"' not in filtered


def test_webhook_and_rule_checks():
    assert check_webhook("") == ""
    assert check_webhook(" https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x ")
    for bad in ("http://example.com/hook", "javascript:alert(1)", "https://"):
        with pytest.raises(Refused):
            check_webhook(bad)
    model, errors = validate("alerts", {"health": {"weights": {"volume": 0.5, "x": 0.5}}})
    assert model is None and "unknown health weights" in errors[0][1]
    model, errors = validate("approvals", {"escalate_after_h": 2})
    assert model is None and "升级时限不能早于提醒时限" in errors[0][1]
    model, errors = validate("approvals", {"timezone": "Mars/Olympus"})
    assert model is None and "Mars/Olympus" in errors[0][1]
    model, errors = validate("alerts", {"timezone": "Mars/Olympus"})
    assert model is None and errors == [("timezone", "时区「Mars/Olympus」不存在（例如 "
                                                     "Asia/Shanghai）")]
    model, errors = validate("approvals", {"remind_after_h": "nan"})
    assert model is None and "必须是有限的数字" in errors[0][1]
    model, errors = validate("alerts", {"routes": [{"alert": "stail", "to": ["owner"]}]})
    assert model is None and "提醒路由 第 1 条：提醒类型「stail」不存在" in errors[0][1]
    model, errors = validate("alerts", {"routes": [{"alert": "stale", "to": ["boss"]}]})
    assert model is None and errors[0][1].startswith("提醒路由 第 1 条 · to.0：必须是以下之一")
    model, errors = validate("alerts", {"health": {"volume_full_score": 0}})
    assert model is None and "满分交易额必须大于 0" in errors[0][1]
    model, errors = validate("alerts", {})
    assert model is not None and errors == []


async def test_quiet_hours_off_and_chat_binding(web):
    from sqlalchemy import text


    c = await admin(web)
    r = await c.post("/app/admin/rules/alerts", {"mode": "form", "base_version": "0",
                                                 "quiet_hours.start": "", "quiet_hours.end": ""})
    assert r.status == 200
    assert '"quiet_hours": null' in web.sql("SELECT value FROM rules")[0][0]
    r = await c.post("/app/admin/rules/alerts", {"mode": "form", "base_version": "1",
                                                 "quiet_hours.start": "22:00",
                                                 "quiet_hours.end": ""})
    assert r.status == 400 and "开始和结束时间要同时填写" in await r.text()
    # a group chat the bot has seen (the bot records it; here it is inserted directly)
    def _write(conn):
        conn.execute(text("INSERT INTO chats (platform, app_id, external_id, type, title, "
                          "webhook_url) VALUES ('wecom', 'corp', 'grp1', 'group', "
                          "'华东销售群', '')"))
    await web.write(_write)
    chat = web.sql("SELECT id FROM chats WHERE external_id = 'grp1'")[0][0]
    team = web.sql("SELECT id, name, region, manager_id FROM teams WHERE name = '华东区'")[0]
    page = await c.page("/app/admin/teams")
    assert "华东销售群（wecom）" in page
    r = await c.post(f"/app/admin/teams/{team[0]}", {"name": team[1], "region": team[2],
                                                     "manager_id": str(team[3]),
                                                     "chat_id": str(chat)})
    assert r.status == 200
    assert web.sql("SELECT chat_id FROM teams WHERE id = :i", i=team[0]) == [(chat,)]
    r = await c.post(f"/app/admin/chats/{chat}", {"webhook_url": "http://example.com/x"})
    assert r.status == 400 and "必须是 https://" in await r.text()
    hook = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=secret"
    r = await c.post(f"/app/admin/chats/{chat}", {"webhook_url": hook})
    assert r.status == 200
    assert web.sql("SELECT webhook_url FROM chats WHERE id = :i", i=chat) == [(hook,)]
    audit = web.sql("SELECT action, detail FROM audit_log WHERE action IN "
                    "('team.update', 'chat.update') ORDER BY id")
    assert [a for a, _ in audit] == ["team.update", "chat.update"]
    assert "secret" not in audit[1][1]  # the webhook key is not copied into the log


_json = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6)
                     | st.floats(allow_nan=True) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
_inner = st.dictionaries(st.sampled_from(
    ["yellow_days", "red_days", "per_stage", "ladder", "weights", "time", "start", "end",
     "days", "grade_a", "grade_b", "volume_full_score", "response_zero_days", "when", "steps",
     "kinds", "amount_gte", "to", "alert"]), _json | st.integers(-5, 40), max_size=4)
_alert_keys = st.sampled_from(["stale", "overdue", "dormant", "health", "digest", "quiet_hours",
                               "routes", "schedule", "timezone", "max_items_per_card"])
_approval_keys = st.sampled_from(["chains", "extra", "remind_after_h", "work_start",
                                  "work_days", "reject_reasons", "timezone", "quiet_end"])


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from(["alerts", "approvals"]), data=st.data())
def test_any_json_document_gets_an_answer_not_an_exception(key, data):
    keys = _alert_keys if key == "alerts" else _approval_keys
    doc = data.draw(st.dictionaries(keys, _json | _inner | st.lists(_inner, max_size=2),
                                    max_size=4))
    model, errors = validate(key, doc)
    assert (model is None) == bool(errors)
    assert all(isinstance(m, str) and m for _p, m in errors)
