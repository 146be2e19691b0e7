"""The deals page's forecast form (issue 17 §4) over HTTP against the demo stack: the owner
sets an open deal's category and expected close date (audited, one ``deal_history`` row, a
flash on the way back), the manager above may too, another rep gets 403, a form without its
CSRF token is refused, bad input is a 400 and a closed deal is not forecast."""

from __future__ import annotations

import re


def deal_id(web, title: str) -> int:
    [(did,)] = web.sql("SELECT id FROM deals WHERE title = :t", t=title)
    return did


def forecast_of(web, did: int) -> tuple:
    [row] = web.sql("SELECT forecast_category, expected_close FROM deals WHERE id = :d", d=did)
    return row[0], str(row[1]) if row[1] is not None else None


async def test_owner_sets_forecast_another_rep_is_refused(web):
    did = deal_id(web, "智能仓储试点")  # zhangsan's, qualified
    rep = await web.client().login("zhangsan")
    page = await rep.page("/app/deals")
    form = re.search(r'<form method="post" action="/app/deals/' + str(did)
                     + r'/forecast".*?</form>', page, re.S)
    assert form and 'value="pipeline" selected' in form.group(0)
    assert 'name="expected_close" value=""' in form.group(0)

    r = await rep.post(f"/app/deals/{did}/forecast",
                       {"category": "commit", "expected_close": "2027-03-20"},
                       allow_redirects=False)
    assert r.status == 302 and r.headers["Location"] == f"/app/deals?saved=1#deal-{did}"
    assert forecast_of(web, did) == ("commit", "2027-03-20")
    assert web.sql("SELECT old, new, who, source FROM deal_history WHERE deal_id = :d "
                   "AND field = 'expected_close'", d=did) == [
        (None, "2027-03-20", str(web.sql("SELECT id FROM users WHERE name = '张三'")[0][0]),
         "web")]
    [(detail,)] = web.sql("SELECT detail FROM audit_log WHERE action = 'deal.forecast' "
                          "AND entity_id = :d", d=str(did))
    assert '"web"' in str(detail) and "commit" in str(detail) and "2027-03-20" in str(detail)
    page = await rep.page(f"/app/deals?saved=1#deal-{did}")
    assert "预测已保存" in page
    form = re.search(r'action="/app/deals/' + str(did) + r'/forecast".*?</form>', page, re.S)
    assert 'value="commit" selected' in form.group(0)
    assert 'value="2027-03-20"' in form.group(0)

    # the same again: nothing changes, nothing more is written
    r = await rep.post(f"/app/deals/{did}/forecast",
                       {"category": "commit", "expected_close": "2027-03-20"},
                       allow_redirects=False)
    assert r.headers["Location"] == f"/app/deals?saved=same#deal-{did}"
    assert web.sql("SELECT count(*) FROM audit_log WHERE action = 'deal.forecast'") == [(1,)]

    # another rep of the same team: 403, unchanged
    lisi = await web.client().login("lisi")
    r = await lisi.post(f"/app/deals/{did}/forecast", {"category": "omitted"})
    assert r.status == 403
    assert forecast_of(web, did) == ("commit", "2027-03-20")

    # no CSRF token: refused before anything happens
    r = await rep.post(f"/app/deals/{did}/forecast", {"category": "omitted"}, csrf=False)
    assert r.status == 403
    r = await rep.post(f"/app/deals/{did}/forecast", {"category": "omitted", "_csrf": "x"})
    assert r.status == 403
    assert forecast_of(web, did) == ("commit", "2027-03-20")

    # bad input, a missing deal, a closed deal
    assert (await rep.post(f"/app/deals/{did}/forecast", {"category": "maybe"})).status == 400
    assert (await rep.post(f"/app/deals/{did}/forecast",
                           {"expected_close": "2027-02-30"})).status == 400
    assert (await rep.post("/app/deals/99999999/forecast", {"category": "commit"})).status \
        == 404
    won = deal_id(web, "设备维保续约")
    r = await rep.post(f"/app/deals/{won}/forecast", {"category": "commit"},
                       allow_redirects=False)
    assert r.headers["Location"] == f"/app/deals?saved=closed#deal-{won}"
    assert forecast_of(web, won)[0] == "pipeline"


async def test_the_manager_above_may_a_manager_elsewhere_may_not(web):
    did = deal_id(web, "自动化产线改造")  # zhangsan's, 华东区
    south = await web.client().login("chenjingli")
    await south.page("/app/deals")
    r = await south.post(f"/app/deals/{did}/forecast", {"category": "omitted"})
    assert r.status == 403
    mgr = await web.client().login("lijingli")
    page = await mgr.page("/app/deals")
    assert f'action="/app/deals/{did}/forecast"' in page
    r = await mgr.post(f"/app/deals/{did}/forecast", {"category": "best_case"},
                       allow_redirects=False)
    assert r.status == 302
    assert forecast_of(web, did) == ("best_case", None)
