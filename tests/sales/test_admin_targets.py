"""The targets admin page: an admin sets cells of the people × months grid, splits the team's
quarter evenly and copies last quarter; a non-admin is refused; a POST without the CSRF token
changes nothing."""

from __future__ import annotations

import re

import aiohttp

from tests.webapp.conftest import web  # noqa: F401 - the demo-stack fixture


def team_id(web, name: str) -> int:  # noqa: F811
    return web.sql("SELECT id FROM teams WHERE name = :n", n=name)[0][0]


def user_id(web, name: str) -> int:  # noqa: F811
    return web.sql("SELECT id FROM users WHERE name = :n", n=name)[0][0]


async def test_grid_save_split_and_copy(web):  # noqa: F811
    admin = await web.client().login("admin")
    east = team_id(web, "华东区")
    q = f"team={east}&quarter=2027-01-01&metric=won"
    html = await admin.page("/app/admin/targets?" + q)
    zhang = user_id(web, "张三")
    assert f'name="u{zhang}-2027-02"' in html and "2027 Q1" in html
    r = await admin.post("/app/admin/targets", {"team": east, "quarter": "2027-01-01",
                                                "metric": "won", "action": "save",
                                                "t-q": "90000", f"u{zhang}-2027-02": "1,500"})
    assert r.status == 200 and "已保存" in await r.text()
    assert web.sql("SELECT value FROM sales_targets WHERE scope = 'user' AND scope_id = :u",
                   u=zhang) == [(1500.0,)]
    html = await admin.page("/app/admin/targets?" + q)
    assert re.search(r'data-explicit="90000.0" data-members="1500.0" data-gap="88500.0"', html)
    # split the team's 90 000 over its people × 3 months: sums back to 90 000
    r = await admin.post("/app/admin/targets", {"team": east, "quarter": "2027-01-01",
                                                "metric": "won", "action": "split"})
    assert r.status == 200 and "已拆分" in await r.text()
    (total,), = web.sql(
        "SELECT sum(t.value) FROM sales_targets t WHERE t.scope = 'user' AND t.period_kind = "
        "'month' AND t.version = (SELECT max(version) FROM sales_targets x WHERE "
        "x.scope = t.scope AND x.scope_id = t.scope_id AND x.period_kind = t.period_kind AND "
        "x.period_start = t.period_start AND x.metric = t.metric)")
    assert round(total, 2) == 90000
    r = await admin.post("/app/admin/targets", {"team": east, "quarter": "2027-04-01",
                                                "metric": "won", "action": "copy"})
    assert r.status == 200 and "已复制" in await r.text()
    assert web.sql("SELECT count(*) FROM sales_targets WHERE period_start >= '2027-04-01'"
                   )[0][0] >= 4
    assert web.sql("SELECT count(*) FROM audit_log WHERE action = 'target.set' AND "
                   "actor_id = (SELECT id FROM users WHERE role = 'admin' LIMIT 1)")[0][0] >= 4


async def test_refusals(web):  # noqa: F811
    east = team_id(web, "华东区")
    rep = await web.client().login("zhangsan")
    assert "没有权限" in await rep.page("/app/admin/targets", status=403)
    admin = await web.client().login("admin")
    await admin.page("/app/admin/targets")
    r = await admin.post("/app/admin/targets", {"team": east, "quarter": "2027-01-01",
                                                "metric": "won", "t-q": "5"}, csrf=False)
    assert r.status == 403
    r = await admin.post("/app/admin/targets", {"team": east, "quarter": "2027-01-01",
                                                "metric": "won", "t-q": "-5"})
    assert r.status == 400
    r = await admin.post("/app/admin/targets", {"team": east, "quarter": "2027-01-01",
                                                "metric": "won", "t-q": "abc"})
    assert r.status == 400
    await admin.page("/app/admin/targets?quarter=nope", status=400)
    assert web.sql("SELECT count(*) FROM sales_targets") == [(0,)]


async def upload(client, data: bytes, name: str = "targets.csv"):
    form = aiohttp.FormData()
    form.add_field("_csrf", client.csrf)
    form.add_field("file", data, filename=name, content_type="text/csv")
    async with client.http.post("/app/admin/targets/import", data=form) as r:
        return r.status, await r.text()


async def test_csv_import_all_or_nothing(web):  # noqa: F811
    admin = await web.client().login("admin")
    await admin.page("/app/admin/targets")
    good = ("scope,name,kind,start,metric,value\n"
            "user,张三,month,2028-02-29,won,\"12,000\"\n"
            "team,华东区,quarter,2028-01-01,collected,90000\n").encode()
    bad = good + "user,没有这个人,month,2028-02-01,won,5\nuser,张三,week,x,won,-1\n".encode()
    status, body = await upload(admin, bad)
    assert status == 400 and "没有导入任何目标" in body and "第 4 行" in body and "第 5 行" in body
    assert web.sql("SELECT count(*) FROM sales_targets") == [(0,)]
    status, body = await upload(admin, good)
    assert status == 200 and "已导入" in body
    assert sorted(web.sql("SELECT scope, period_kind, period_start, metric, value "
                          "FROM sales_targets")) == [
        ("team", "quarter", "2028-01-01", "collected", 90000.0),
        ("user", "month", "2028-02-01", "won", 12000.0)]
    status, _ = await upload(admin, b"name,value\nx,1\n")
    assert status == 400
