"""Check-ins on the manager's dashboard (issue 16 §2): the period's visits with a position,
those with a distance to their customer, and those beyond the radius — marked, listed
farthest first in the drill-down with "距客户 80 m"; a GCJ-02 position (a platform's location
message) is converted before measuring, so it agrees with a WGS-84 one (the browser's)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert

from sales.checkin import wgs84_to_gcj02
from storage.models import Visit

pytestmark = pytest.mark.dates  # "this month" is the frozen clock's (tests/conftest.py)

HERE = (31.2304, 121.4737)  # the customer, WGS-84
M_PER_DEG_LAT = 111_195.0


def north(metres: float) -> tuple[float, float]:
    return HERE[0] + metres / M_PER_DEG_LAT, HERE[1]


async def test_dashboard_counts_and_lists_the_check_ins(web):
    (uid,), = web.sql("SELECT id FROM users WHERE name = '张三'")
    (cid,), = web.sql("SELECT id FROM customers WHERE name = '华东精密零部件有限公司'")
    (other,), = web.sql("SELECT id FROM customers WHERE lat IS NULL AND id != :c "
                        "ORDER BY id LIMIT 1", c=cid)
    now = datetime.now(UTC)
    far_gcj = wgs84_to_gcj02(*north(2000))  # as WeCom/Feishu send it

    def seed(conn):
        conn.execute(Visit.__table__.update().values(lat=None, lng=None))
        conn.exec_driver_sql("UPDATE customers SET lat=?, lng=?, coord_system='wgs84' "
                             "WHERE id=?", (*HERE, cid))
        rows = [("近 80 m", cid, *north(80), "wgs84"), ("远 2 km", cid, *far_gcj, "gcj02"),
                ("客户无坐标", other, *north(10), "wgs84"), ("无位置", cid, None, None, "")]
        conn.execute(insert(Visit.__table__), [
            {"user_id": uid, "customer_id": c, "source": "manual", "summary": s,
             "evidence": {}, "lat": lat, "lng": lng, "coord_system": system,
             "created_at": now - timedelta(seconds=i)}  # inside the period at any instant
            for i, (s, c, lat, lng, system) in enumerate(rows)])

    await web.write(seed)
    mgr = await web.client().login("lijingli")
    page = await mgr.page("/app/dashboard")
    box = re.search(r'id="checkins" data-positioned="(\d+)" data-measured="(\d+)" '
                    r'data-far="(\d+)"', page)
    assert box and box.groups() == ("3", "2", "1"), page[page.find('id="checkins"') - 20:][:600]
    assert "超出 500 m" in page

    listing = await mgr.page("/app/dashboard/list?metric=checkins")
    rows = re.findall(r'data-visit="\d+" data-distance="(\d+)" data-far="(\d)"', listing)
    assert [far for _d, far in rows] == ["1", "0"]  # farthest first
    assert abs(int(rows[0][0]) - 2000) <= 10 and abs(int(rows[1][0]) - 80) <= 1
    assert "距客户 80 m" in listing and "超出范围" in listing
    far_only = await mgr.page("/app/dashboard/list?metric=checkins&value=far")
    assert len(re.findall(r'data-far="1"', far_only)) == 1 and 'data-far="0"' not in far_only
    await mgr.page("/app/dashboard/list?metric=checkins&value=bogus", status=400)

    rep = await web.client().login("zhangsan")  # a rep has no dashboard
    await rep.page("/app/dashboard/list?metric=checkins", status=403)
