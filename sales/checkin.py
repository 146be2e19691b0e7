"""Location check-in (签到): how far a visit was filed from its customer, and whether that is
farther than the radius (marked, never refused).

Positions are stored as their source gives them: the browser's Geolocation API gives WGS-84,
the Chinese platforms' location messages and maps give GCJ-02 (the "Mars" offset, up to a few
hundred metres). Distances are taken in WGS-84: a GCJ-02 point is converted first with the
standard published inverse (iterated to well under a metre).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WGS84 = "wgs84"
GCJ02 = "gcj02"
SYSTEMS = (WGS84, GCJ02)
DEFAULT_RADIUS_M = 500.0
EARTH_RADIUS_M = 6371008.8  # mean radius (IUGG)

# the GCJ-02 transform's constants (Krasovsky 1940 ellipsoid), as published
_A = 6378245.0
_EE = 0.00669342162296594323


@dataclass(frozen=True)
class Point:
    lat: float
    lng: float
    system: str = WGS84


@dataclass(frozen=True)
class CheckIn:
    distance_m: float  # from the customer, in metres
    radius_m: float
    far: bool  # farther than the radius: marked for the manager, the visit is still filed

    @property
    def label(self) -> str:
        """"距客户 120 m / 120 m from the customer" (km past 1000 m)."""
        return f"距客户 {format_distance(self.distance_m)} / " \
               f"{format_distance(self.distance_m)} from the customer"


def valid(lat: float, lng: float) -> bool:
    return (math.isfinite(lat) and math.isfinite(lng) and -90 <= lat <= 90
            and -180 <= lng <= 180)


# how people write the two systems in master data and spreadsheets
_SYSTEM_NAMES = {
    "wgs84": WGS84, "wgs-84": WGS84, "wgs 84": WGS84, "gps": WGS84, "epsg:4326": WGS84,
    "gcj02": GCJ02, "gcj-02": GCJ02, "gcj 02": GCJ02, "mars": GCJ02, "火星": GCJ02,
    "火星坐标": GCJ02, "高德": GCJ02, "腾讯": GCJ02, "amap": GCJ02, "国测局": GCJ02,
}


def parse_system(text: str) -> str | None:
    """``"WGS-84"``, ``"gps"`` → wgs84; ``"GCJ-02"``, ``"高德"`` → gcj02; else None."""
    return _SYSTEM_NAMES.get((text or "").strip().lower())


def out_of_china(lat: float, lng: float) -> bool:
    """GCJ-02 applies inside mainland China only (the published bounding box)."""
    return not (72.004 <= lng <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _dlat(x: float, y: float) -> float:
    r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    r += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    r += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    r += (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return r


def _dlng(x: float, y: float) -> float:
    r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    r += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    r += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    r += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return r


def wgs84_to_gcj02(lat: float, lng: float) -> tuple[float, float]:
    if out_of_china(lat, lng):
        return lat, lng
    dlat = _dlat(lng - 105.0, lat - 35.0)
    dlng = _dlng(lng - 105.0, lat - 35.0)
    rad = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(rad) ** 2
    sqrt_magic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrt_magic) * math.pi)
    dlng = (dlng * 180.0) / (_A / sqrt_magic * math.cos(rad) * math.pi)
    return lat + dlat, lng + dlng


def gcj02_to_wgs84(lat: float, lng: float) -> tuple[float, float]:
    """The inverse, by fixed-point iteration on the forward transform (< 0.01 m)."""
    if out_of_china(lat, lng):
        return lat, lng
    wlat, wlng = lat, lng
    for _ in range(30):
        glat, glng = wgs84_to_gcj02(wlat, wlng)
        dlat, dlng = glat - lat, glng - lng
        wlat, wlng = wlat - dlat, wlng - dlng
        if abs(dlat) < 1e-9 and abs(dlng) < 1e-9:
            break
    return wlat, wlng


def to_wgs84(p: Point) -> tuple[float, float]:
    if p.system == GCJ02:
        return gcj02_to_wgs84(p.lat, p.lng)
    return p.lat, p.lng


def haversine_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def distance_m(a: Point, b: Point) -> float:
    """Metres between two positions, each in its own coordinate system."""
    return haversine_m(*to_wgs84(a), *to_wgs84(b))


def check_in(visit: Point, customer: Point, radius_m: float = DEFAULT_RADIUS_M) -> CheckIn:
    d = distance_m(visit, customer)
    return CheckIn(distance_m=d, radius_m=radius_m, far=d > radius_m)


def check_in_at(vlat: float | None, vlng: float | None, vsys: str | None, clat: float | None,
                clng: float | None, csys: str | None,
                radius_m: float = DEFAULT_RADIUS_M) -> CheckIn | None:
    """The check-in of a visit at (vlat, vlng) for a customer at (clat, clng), both as stored
    (a blank system is WGS-84); None when either position is missing."""
    if vlat is None or vlng is None or clat is None or clng is None:
        return None
    return check_in(Point(vlat, vlng, vsys or WGS84), Point(clat, clng, csys or WGS84), radius_m)


def format_distance(metres: float) -> str:
    """"80 m" (whole metres below a kilometre), "2.0 km"."""
    if metres < 1000:
        return f"{round(metres)} m"
    return f"{metres / 1000:.1f} km"
