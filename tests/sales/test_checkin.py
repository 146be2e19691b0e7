"""Location check-in (``sales.checkin``): the distance a visit was filed from its customer,
the far mark past the radius, and WGS-84 ↔ GCJ-02 for positions from different sources."""

from __future__ import annotations

import math

import pytest

from sales.checkin import (
    DEFAULT_RADIUS_M,
    GCJ02,
    WGS84,
    Point,
    check_in,
    distance_m,
    format_distance,
    gcj02_to_wgs84,
    haversine_m,
    wgs84_to_gcj02,
)

# 昆明滇池 area and Shanghai 人民广场 (WGS-84, as a phone's GPS reports them)
KUNMING = (24.9664, 102.6831)
SHANGHAI = (31.2304, 121.4737)


def offset(lat: float, lng: float, north_m: float, east_m: float) -> tuple[float, float]:
    """A point ``north_m``/``east_m`` metres away on the local tangent plane."""
    r = 6371008.8
    return (lat + math.degrees(north_m / r),
            lng + math.degrees(east_m / (r * math.cos(math.radians(lat)))))


def test_a_check_in_80_m_away_shows_80_m_and_is_not_marked():
    customer = Point(*SHANGHAI)
    ci = check_in(Point(*offset(*SHANGHAI, 48, 64)), customer)  # 3-4-5: 80 m
    assert round(ci.distance_m) == 80
    assert ci.label == "距客户 80 m / 80 m from the customer"
    assert not ci.far and ci.radius_m == DEFAULT_RADIUS_M


def test_2_km_away_is_marked_and_the_radius_is_a_parameter():
    customer = Point(*KUNMING)
    ci = check_in(Point(*offset(*KUNMING, 0, 2000)), customer)
    assert ci.far and "2.0 km" in ci.label
    assert round(ci.distance_m) == 2000
    assert not check_in(Point(*offset(*KUNMING, 0, 2000)), customer, radius_m=2500).far
    assert check_in(Point(*offset(*KUNMING, 0, 501)), customer).far
    assert not check_in(Point(*offset(*KUNMING, 0, 499)), customer).far


@pytest.mark.parametrize("spot", [SHANGHAI, KUNMING, (39.9087, 116.3975), (22.5431, 114.0579)])
def test_gcj02_and_wgs84_for_the_same_spot_agree_within_10_m(spot):
    gcj = wgs84_to_gcj02(*spot)
    # the offset is real (hundreds of metres): comparing them raw would be wrong
    assert haversine_m(*spot, *gcj) > 100
    from_platform = Point(*gcj, GCJ02)  # a chat platform's location message
    from_browser = Point(*spot, WGS84)  # the browser's Geolocation API
    assert distance_m(from_platform, from_browser) < 10
    back = gcj02_to_wgs84(*gcj)
    assert haversine_m(*back, *spot) < 0.5


def test_gcj02_matches_a_published_reference_point():
    # 天安门: the commonly quoted pair WGS-84 (39.90734, 116.39139) ↔ GCJ-02
    # (39.90874, 116.39763), a shift of about 560 m (to within 20 m)
    lat, lng = wgs84_to_gcj02(39.90734, 116.39139)
    assert abs(lat - 39.90874) < 2e-4 and abs(lng - 116.39763) < 2e-4


def test_outside_china_nothing_is_shifted():
    assert wgs84_to_gcj02(48.8584, 2.2945) == (48.8584, 2.2945)


def test_format_distance():
    assert [format_distance(m) for m in (0, 80.4, 999.4, 1500, 2000)] == [
        "0 m", "80 m", "999 m", "1.5 km", "2.0 km"]
