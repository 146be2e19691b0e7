"""Targets and stage history through the REST API (the demo stack on loopback): PUT sets
versioned, audited targets by name; GET reads a period's targets with a team's members' sum
and gap; bad input is a 4xx; a deal upserted by the API records each transition once."""

from __future__ import annotations

from datetime import date

import pytest

from tests.webapp.test_api import api, call  # noqa: F401 - the fixture

BODY = {"kind": "quarter", "start": "2027-02-15", "metric": "won",
        "targets": [{"scope": "user", "name": "张三", "value": 100000},
                    {"scope": "user", "name": "李四", "value": 50000.5}]}


async def test_put_then_get_targets_with_the_team_gap(api):  # noqa: F811
    status, out = await call(api, "PUT", "/api/v1/targets", BODY)
    assert status == 200, out
    assert (out["kind"], out["start"], out["end"], out["changed"]) == (
        "quarter", "2027-01-01", "2027-03-31", 2)
    status, again = await call(api, "PUT", "/api/v1/targets", BODY)
    assert again["changed"] == 0  # same values: no new version
    team = {"kind": "quarter", "start": "2027-01-01", "metric": "won",
            "targets": [{"scope": "team", "name": "华东区", "value": 160000}]}
    assert (await call(api, "PUT", "/api/v1/targets", team))[0] == 200
    status, got = await call(api, "GET", "/api/v1/targets?kind=quarter&start=2027-03-31")
    assert status == 200
    users = {u["user"]: u["value"] for u in got["users"]}
    assert users["张三"] == 100000 and users["李四"] == 50000.5
    east = next(t for t in got["teams"] if t["team"] == "华东区")
    assert east["explicit"] == 160000 and east["value"] == 160000
    assert east["members"] == users["张三"] + users["李四"] + (users.get("李经理") or 0)
    assert round(east["gap"], 2) == round(160000 - east["members"], 2)
    # a month of that quarter has no targets: the quarter's do not leak into it
    status, jan = await call(api, "GET", "/api/v1/targets?kind=month&start=2027-01-01")
    assert all(u["value"] is None for u in jan["users"])
    rows = await api.sql("SELECT count(*) FROM audit_log WHERE action = 'target.set' "
                         "AND actor_ref = 'api'")
    assert rows == [(3,)]


async def test_bad_target_requests_are_4xx(api):  # noqa: F811
    bad = [dict(BODY, kind="week"), dict(BODY, targets=[]),
           dict(BODY, targets=[{"scope": "user", "name": "没有这个人", "value": 1}]),
           dict(BODY, targets=[{"scope": "user", "name": "张三", "value": -5}]),
           dict(BODY, start="9999-12-31")]
    for body in bad:
        status, out = await call(api, "PUT", "/api/v1/targets", body)
        assert status == 422 and out["error"], (body, out)
    for q in ("", "?start=nope", "?start=2027-01-01&kind=decade", "?start=0001-01-01"):
        status, _ = await call(api, "GET", "/api/v1/targets" + q)
        assert status == 422, q
    status, _ = await call(api, "GET", "/api/v1/targets?start=2027-01-01", headers={})
    assert status == 401
    assert await api.sql("SELECT count(*) FROM sales_targets") == [(0,)]


async def test_an_api_deal_records_each_transition_once(api):  # noqa: F811
    deal = {"customer": "华东精密零部件有限公司", "title": "ERP 商机", "stage": "lead",
            "amount": 1000}
    for stage in ("lead", "proposal", "proposal", "won"):
        status, _ = await call(api, "PUT", "/api/v1/deals/H-1", dict(deal, stage=stage))
        assert status in (200, 201)
    rows = await api.sql(
        "SELECT h.field, h.old, h.new, h.source FROM deal_history h JOIN deals d "
        "ON d.id = h.deal_id WHERE d.external_id = 'H-1' ORDER BY h.id")
    assert rows == [("stage", None, "lead", "api"), ("stage", "lead", "proposal", "api"),
                    ("stage", "proposal", "won", "api")]


async def test_attainment_endpoint(api):  # noqa: F811
    month = {"kind": "month", "start": "2027-01-01", "metric": "won",
             "targets": [{"scope": "user", "name": "张三", "value": 100000}]}
    assert (await call(api, "PUT", "/api/v1/targets", month))[0] == 200
    (team,), = await api.sql("SELECT id FROM teams WHERE name = '华东区'")
    status, out = await call(api, "GET", f"/api/v1/attainment?kind=month&start=2027-01-20"
                                          f"&today=2027-01-16&team={team}")
    assert status == 200, out
    assert (out["start"], out["end"], out["today"]) == ("2027-01-01", "2027-01-31",
                                                        "2027-01-16")
    assert abs(out["elapsed"] - 16 / 31) < 1e-9 and out["heads"] == 1
    zhang = next(p for p in out["people"] if p["user"] == "张三")
    assert (zhang["won"], zhang["won_target"], zhang["attainment"]) == (0, 100000, 0)
    assert out["total"]["won_target"] == 100000  # the team's default: its members' sum
    assert out["label"] == "达成 0 %，本月已过 52 % / 0 % at 52 % of the month"
    for q in ("?team=999999", "?team=x", "?kind=week", "?today=2027-13-01"):
        assert (await call(api, "GET", "/api/v1/attainment" + q))[0] == 422, q


@pytest.mark.dates  # the server's "this month" is the frozen clock's (tests/conftest.py)
async def test_forecast_endpoint_sums_the_reps_calls_and_weights_by_stage(api):  # noqa: F811
    """Two of 张三's open deals close this month, one committed, one best case: the API's
    commit and best case add their amounts to what is won, and its weighted figure is the
    won amount plus each amount × the probability the same answer gives for its stage."""
    status, first = await call(api, "GET", "/api/v1/forecast")
    assert status == 200, first
    today = first["today"]
    assert first["start"] <= today <= first["end"]
    await api.sql("UPDATE deals SET expected_close = NULL")
    deals = await api.sql(
        "SELECT d.id, d.stage, d.amount FROM deals d JOIN users u ON u.id = d.owner_id "
        "WHERE u.name = '张三' AND d.stage NOT IN ('won', 'lost') AND d.amount > 0 "
        "ORDER BY d.id LIMIT 2")
    assert len(deals) == 2, deals
    for (did, _, _), category in zip(deals, ("commit", "best_case"), strict=True):
        await api.sql("UPDATE deals SET expected_close = :d, forecast_category = :c "
                      "WHERE id = :i", d=date.fromisoformat(today), c=category, i=did)
    status, out = await call(api, "GET", "/api/v1/forecast?period=month")
    assert status == 200, out
    zhang = next(p for p in out["people"] if p["name"] == "张三")
    (team,), = await api.sql("SELECT team_id FROM users WHERE name = '张三'")
    probs = next(p for p in out["probabilities"] if p["team_id"] == team)
    assert probs["basis"] in ("defaults", "blended", "learned") or probs["label"]
    (a_id, a_stage, a_amount), (b_id, b_stage, b_amount) = deals
    assert zhang["commit"] - zhang["won"] == pytest.approx(a_amount)
    assert zhang["best_case"] - zhang["commit"] == pytest.approx(b_amount)
    assert zhang["weighted"] - zhang["won"] == pytest.approx(
        a_amount * probs["by_stage"][a_stage] + b_amount * probs["by_stage"][b_stage])
    assert out["total"]["commit"] >= zhang["commit"]
    status, _ = await call(api, "GET", "/api/v1/forecast?period=decade")
    assert status == 422
    status, _ = await call(api, "GET", "/api/v1/forecast", headers={})
    assert status == 401
