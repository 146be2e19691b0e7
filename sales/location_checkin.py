"""Check-in from a location message sent in chat (issue 16 §2): the position goes onto the
rep's visit filed just before it, or, when none is, waits for the visit filed just after.

- A location within ``WINDOW`` (30 min) after a visit of the same rep that has no position
  yet: that visit gets it (the newest such visit).
- Otherwise the position is held (the rep's preferences row ``pending_position``) and the
  rep's next visit filed within ``WINDOW`` takes it (``take_pending``), once.
- The customer's own coordinates are never set silently: when the customer has none, the
  answer offers to set them from this check-in, and ``set_customer_position`` does it after
  the rep (the customer's owner, a manager above or an admin — the caller checks) confirms.

Positions are stored as the platform gives them (GCJ-02 for WeCom and Feishu location
messages); ``sales.checkin`` converts for the distance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from sales.checkin import DEFAULT_RADIUS_M, WGS84, CheckIn, Point, check_in_at, valid
from storage.models import Customer, Visit
from storage.prefs import get_prefs, set_pref

WINDOW = timedelta(minutes=30)


@dataclass
class Placed:
    visit: Visit | None  # the visit that took the position; None: held for the next one
    customer: Customer | None
    checkin: CheckIn | None  # None when there is no visit or the customer has no position

    @property
    def customer_needs_position(self) -> bool:
        return self.customer is not None and (self.customer.lat is None
                                              or self.customer.lng is None)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def checkin_of(visit: Visit, customer: Customer | None,
               radius_m: float = DEFAULT_RADIUS_M) -> CheckIn | None:
    if customer is None:
        return None
    return check_in_at(visit.lat, visit.lng, visit.coord_system, customer.lat, customer.lng,
                       customer.coord_system, radius_m)


def _put(visit: Visit, point: Point, accuracy_m: float | None = None) -> None:
    visit.lat, visit.lng, visit.coord_system = point.lat, point.lng, point.system
    visit.accuracy_m = accuracy_m


async def place(session, user_id: int, point: Point, at: datetime,
                radius_m: float = DEFAULT_RADIUS_M) -> Placed:
    """A location message from ``user_id`` at ``at``: onto their newest visit without a
    position filed in the ``WINDOW`` before, else held. The caller audits and commits."""
    if not valid(point.lat, point.lng):
        raise ValueError("position out of range")
    visit = (await session.exec(
        select(Visit).where(Visit.user_id == user_id, Visit.lat.is_(None),
                            Visit.created_at >= at - WINDOW, Visit.created_at <= at)
        .order_by(Visit.created_at.desc(), Visit.id.desc()).limit(1))).first()
    if visit is None:
        await set_pref(session, user_id, at, pending_position={
            "lat": point.lat, "lng": point.lng, "system": point.system,
            "at": at.astimezone(UTC).isoformat()})
        return Placed(None, None, None)
    _put(visit, point)
    session.add(visit)
    customer = await session.get(Customer, visit.customer_id) if visit.customer_id else None
    await session.flush()
    return Placed(visit, customer, checkin_of(visit, customer, radius_m))


async def take_pending(session, visit: Visit, now: datetime) -> bool:
    """A visit just written: give it the rep's held position when that was sent within the
    ``WINDOW`` before and the visit has none; the held position is used once."""
    if visit.user_id is None or visit.lat is not None:
        return False
    prefs = await get_prefs(session, visit.user_id)
    held = prefs.get("pending_position")
    if not isinstance(held, dict):
        return False
    try:
        at = _aware(datetime.fromisoformat(str(held["at"])))
        point = Point(float(held["lat"]), float(held["lng"]), str(held.get("system") or WGS84))
    except (KeyError, TypeError, ValueError):
        return False
    await set_pref(session, visit.user_id, now, pending_position=None)
    if not (now - WINDOW <= at <= now) or not valid(point.lat, point.lng):
        return False
    _put(visit, point)
    session.add(visit)
    return True


def set_customer_position(customer: Customer, visit: Visit) -> bool:
    """The customer's coordinates from this visit's check-in (once confirmed); False when the
    visit has no position or the customer already has one (never overwritten here)."""
    if visit.lat is None or visit.lng is None or visit.customer_id != customer.id:
        return False
    if customer.lat is not None and customer.lng is not None:
        return False
    customer.lat, customer.lng = visit.lat, visit.lng
    customer.coord_system = visit.coord_system or WGS84
    return True
