"""A location message is a check-in: onto the visit filed just before it, else held for the
next visit within 30 minutes (once); the customer's position is only set when asked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handlers.visits import write_visit
from sales.checkin import GCJ02, WGS84, Point, wgs84_to_gcj02
from sales.location_checkin import place, set_customer_position, take_pending
from storage.models import Customer, Visit

T = datetime(2027, 1, 31, 15, 59, 30, tzinfo=UTC)  # 23:59:30 in Shanghai, a month's end
HERE = (31.2304, 121.4737)  # WGS-84


def north(metres: float) -> tuple[float, float]:
    return HERE[0] + metres / 111_195.0, HERE[1]


async def _customer(db, org, **kw) -> Customer:
    c = await db.get(Customer, org.customer)
    for k, v in kw.items():
        setattr(c, k, v)
    db.add(c)
    await db.commit()
    return c


async def test_a_location_after_a_visit_checks_it_in(db, org):
    rep = org.reps[0]
    await _customer(db, org, lat=HERE[0], lng=HERE[1], coord_system=WGS84)
    db.add(Visit(user_id=rep, customer_id=org.customer, source="chat", summary="a",
                 created_at=T - timedelta(minutes=10)))
    await db.commit()
    lat, lng = wgs84_to_gcj02(*north(80))  # as WeCom's map sends it
    placed = await place(db, rep, Point(lat, lng, GCJ02), T)
    assert placed.visit is not None and placed.visit.coord_system == GCJ02
    assert placed.checkin.label.startswith("距客户 80 m") and not placed.checkin.far
    far = await place(db, rep, Point(*north(2000)), T)  # that visit has its position now
    assert far.visit is None  # held for the next one


async def test_two_kilometres_is_marked_never_refused(db, org):
    rep = org.reps[0]
    await _customer(db, org, lat=HERE[0], lng=HERE[1], coord_system=WGS84)
    db.add(Visit(user_id=rep, customer_id=org.customer, source="chat", summary="a",
                 created_at=T - timedelta(minutes=1)))
    await db.commit()
    placed = await place(db, rep, Point(*north(2000)), T, radius_m=500)
    assert placed.checkin.far and placed.checkin.label.startswith("距客户 2.0 km")


async def test_a_visit_older_than_the_window_or_another_reps_is_left_alone(db, org):
    a, b = org.reps
    db.add_all([Visit(user_id=a, customer_id=org.customer, source="chat", summary="old",
                      created_at=T - timedelta(minutes=31)),
                Visit(user_id=b, customer_id=org.customer, source="chat", summary="b's",
                      created_at=T - timedelta(minutes=1))])
    await db.commit()
    assert (await place(db, a, Point(*HERE), T)).visit is None


async def test_a_held_position_goes_onto_the_next_visit_once(db, org):
    rep = org.reps[0]
    customer = await _customer(db, org)
    await place(db, rep, Point(*HERE, GCJ02), T)
    await db.commit()
    v1, _ = await write_visit(db, customer, user_id=rep, source="chat", summary="1",
                              evidence={}, now=T + timedelta(minutes=5))
    v2, _ = await write_visit(db, customer, user_id=rep, source="chat", summary="2",
                              evidence={}, now=T + timedelta(minutes=6))
    await db.commit()
    assert (v1.lat, v1.lng, v1.coord_system) == (*HERE, GCJ02)
    assert v2.lat is None  # used once


async def test_a_held_position_expires(db, org):
    rep = org.reps[0]
    customer = await _customer(db, org)
    await place(db, rep, Point(*HERE), T)
    await db.commit()
    v, _ = await write_visit(db, customer, user_id=rep, source="chat", summary="late",
                             evidence={}, now=T + timedelta(minutes=31))
    assert v.lat is None and not await take_pending(db, v, T + timedelta(minutes=32))


async def test_customer_position_is_set_from_a_check_in_only_when_it_has_none(db, org):
    customer = await _customer(db, org)
    v = Visit(user_id=org.reps[0], customer_id=org.customer, lat=HERE[0], lng=HERE[1],
              coord_system=GCJ02, created_at=T)
    assert set_customer_position(customer, v)
    assert (customer.lat, customer.coord_system) == (HERE[0], GCJ02)
    v2 = Visit(user_id=org.reps[0], customer_id=org.customer, lat=0.5, lng=0.5, created_at=T)
    assert not set_customer_position(customer, v2) and customer.lat == HERE[0]


async def test_out_of_range_is_refused(db, org):
    with pytest.raises(ValueError):
        await place(db, org.reps[0], Point(95.0, 10.0), T)
