"""The dashboard's forecast panel (issue 17 §4, §6): an open deal expected to close this month
moves its rep's and team's weighted forecast by amount × the team's shown probability and the
commit and best case by the amount; another team's manager and a rep do not see it; the charts
are well-formed SVG with one point per Monday snapshot and one bar per rep."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert

from sales.periods import Period
from storage.models import Deal
from storage.sales_models import ForecastSnapshot
from tests.webapp.conftest import web  # noqa: F401 - the demo-stack fixture

pytestmark = pytest.mark.dates
SVG = "{http://www.w3.org/2000/svg}"
TZ = ZoneInfo("Asia/Shanghai")


def uid(web, name: str) -> int:  # noqa: F811
    return web.sql("SELECT id FROM users WHERE name = :n", n=name)[0][0]


def row(html: str, attr: str, ident: int, kind: str = "month") -> dict[str, float]:
    m = re.search(rf'<tr[^>]*data-{attr}="{ident}" data-start="[\d-]+" data-kind="{kind}"'
                  r' data-won="([\d.]+)" data-weighted="([\d.]+)" data-commit="([\d.]+)"'
                  r' data-best="([\d.]+)"', html)
    assert m, (attr, ident)
    return dict(zip(("won", "weighted", "commit", "best"), map(float, m.groups()),
                    strict=True))


def svgs(html: str) -> list[ET.Element]:
    panel = html[html.index('id="forecast-panel"'):]
    panel = panel[:panel.index("</section>")]
    return [ET.fromstring(s) for s in re.findall(r"<svg.*?</svg>", panel, re.S)]


def title(svg: ET.Element) -> str:
    return svg.find(SVG + "title").text


async def test_forecast_panel_figures_scope_and_charts(web):  # noqa: F811
    mgr = await web.client().login("lijingli")
    zhang, wang = uid(web, "张三"), uid(web, "王五")
    (team,), = web.sql("SELECT id FROM teams WHERE name = '华东区'")
    html = await mgr.page("/app/dashboard")
    before_rep, before_team = row(html, "fc-rep", zhang), row(html, "fc-team", team)
    assert f'data-fc-rep="{wang}"' not in html  # 王五 is in 华南区
    now = datetime.now(UTC)
    today = now.astimezone(TZ).date()
    month = Period.of("month", today)
    (cid,), = web.sql("SELECT min(id) FROM customers")

    def write(conn):
        conn.execute(insert(Deal).values(
            customer_id=cid, owner_id=zhang, title="本月要签", stage="negotiation",
            amount=20_000, expected_close=today, forecast_category="commit",
            last_activity_at=now, created_at=now))
        prev = month.previous()
        rows = []
        for day, (w, c, won) in ((month.start, (50_000, 30_000, 1_000)),
                                 (month.start + timedelta(days=7), (60_000, 40_000, 9_000))):
            rows += [{"taken_on": day, "scope": "team", "scope_id": team, "period_kind": "month",
                      "period_start": month.start, "method": mth, "value": v, "won": won,
                      "basis": "default", "created_at": now}
                     for mth, v in (("weighted", w), ("commit", c))]
        rows += [{"taken_on": prev.start + timedelta(days=d), "scope": "team",
                  "scope_id": team, "period_kind": "month", "period_start": prev.start,
                  "method": mth, "value": 1_000, "won": 0, "basis": "default",
                  "created_at": now} for d in (0, 7) for mth in ("weighted", "commit")]
        conn.execute(insert(ForecastSnapshot), rows)
    await web.write(write)
    html = await mgr.page("/app/dashboard")
    p = float(re.search(r'<tr data-probs="华东区"[^>]*>.*?data-p="negotiation" '
                        r'data-value="([\d.]+)"', html, re.S).group(1))
    rep, tm = row(html, "fc-rep", zhang), row(html, "fc-team", team)
    for got, was in ((rep, before_rep), (tm, before_team)):
        assert got["won"] == was["won"]
        assert got["weighted"] == pytest.approx(was["weighted"] + 20_000 * p, abs=0.01)
        assert got["commit"] == pytest.approx(was["commit"] + 20_000, abs=0.01)
        assert got["best"] == pytest.approx(was["best"] + 20_000, abs=0.01)
    charts = svgs(html)
    trend = next(s for s in charts if month.label in title(s) and "Forecast vs" in title(s))
    points = trend.findall(f".//{SVG}g[@class='point']")
    assert len(points) == 3 * 2  # weighted, commit, won × two Mondays
    assert [float(g.get("data-value")) for g in points[:2]] == [50_000, 60_000]
    legend = [t.text for t in trend.iter(SVG + "text")]
    assert any(t and "¥9,000" in t for t in legend)  # the won line's latest value, in words
    att = next(s for s in charts if "Attainment per rep" in title(s))
    reps = web.sql("SELECT count(*) FROM users WHERE active AND role IN ('rep', 'manager') "
                   "AND team_id = :t", t=team)[0][0]
    assert len(att.findall(f".//{SVG}rect[@class='fill']")) == reps
    assert att.find(f".//{SVG}g[@class='marker']") is not None
    acc = next(s for s in charts if "accuracy" in title(s) and "华东区" in title(s))
    acc_points = acc.findall(f".//{SVG}g[@class='point']")
    assert len(acc_points) in (0, 2)  # weighted and commit of last month (if anything won)

    other = await web.client().login("chenjingli")
    html = await other.page("/app/dashboard")
    assert f'data-fc-rep="{zhang}"' not in html and f'data-fc-team="{team}"' not in html
    assert 'data-probs="华东区"' not in html
    await other.page(f"/app/dashboard?team={team}", status=403)
    rep_client = await web.client().login("zhangsan")
    await rep_client.page("/app/dashboard", status=403)
