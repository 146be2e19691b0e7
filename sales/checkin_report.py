"""Check-ins on the manager's dashboard (issue 16 §2): of the visits filed in a period, how
many carry a position, how many of those have a customer with coordinates (so a distance),
and how many were farther than the radius — marked, never refused. One query over the scope's
visits in the period that have a position (``visits.created_at`` is indexed); the distance is
``sales.checkin``'s (GCJ-02 converted first), so the page, the card and the capture queue agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, false, func, select

from sales.checkin import CheckIn, check_in_at
from sales.funnel import _rows
from storage.models import Customer, Visit

ROWS_MAX = 5000  # a period's positioned visits of one scope; more are counted, not measured


@dataclass
class CheckinRow:
    visit_id: int
    checkin: CheckIn


@dataclass
class CheckinSummary:
    visits: int = 0  # filed in the period
    positioned: int = 0  # with a position
    measured: int = 0  # with a position and a customer that has coordinates
    far: int = 0  # measured, and farther than the radius
    radius_m: float = 0.0
    rows: list[CheckinRow] = field(default_factory=list)  # measured, farthest first


def _scoped(owners: list[int] | None):
    if owners is None:
        return True
    return Visit.user_id.in_(owners) if owners else false()


async def checkins(db, owners: list[int] | None, t0: datetime, t1: datetime,
                   radius_m: float) -> CheckinSummary:
    """``owners``: the users whose visits count (None: everyone's)."""
    in_period = and_(Visit.created_at >= t0, Visit.created_at < t1, _scoped(owners))
    (total, positioned), = await _rows(db, select(func.count(), func.count(Visit.lat))
                                       .where(in_period))
    out = CheckinSummary(visits=int(total), positioned=int(positioned), radius_m=radius_m)
    q = (select(Visit.id, Visit.lat, Visit.lng, Visit.coord_system, Customer.lat,
                Customer.lng, Customer.coord_system)
         .join(Customer, Customer.id == Visit.customer_id)
         .where(in_period, Visit.lat.is_not(None), Visit.lng.is_not(None),
                Customer.lat.is_not(None), Customer.lng.is_not(None))
         .order_by(Visit.created_at.desc()).limit(ROWS_MAX))
    for vid, vlat, vlng, vsys, clat, clng, csys in await _rows(db, q):
        out.rows.append(CheckinRow(vid, check_in_at(vlat, vlng, vsys, clat, clng, csys,
                                                    radius_m)))
    out.rows.sort(key=lambda r: -r.checkin.distance_m)
    out.measured = len(out.rows)
    out.far = sum(r.checkin.far for r in out.rows)
    return out
