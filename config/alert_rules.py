"""Alert rules: thresholds, routing, quiet hours and cooldowns, with defaults.

Admins edit them as a ``[rules.alerts]`` TOML table (``settings.rules["alerts"]``) or as the
latest ``rules`` row with key ``"alerts"``; both are partial dicts merged over the defaults::

    [rules.alerts.stale]
    yellow_days = 20
    red_days = 30
    per_stage = { negotiation = { yellow_days = 10, red_days = 15 } }

    [[rules.alerts.routes]]
    alert = "overdue"          # stale | overdue | dormant | health | digest | "*"
    severity = "red"           # yellow | red | "*"
    team_id = 3                # optional: only this team
    region = "华东"            # optional: only this region
    to = ["owner", "manager", "team_chat"]

Routes are tried in order; the first that matches wins, so specific ones go first. Pure data:
nothing here touches the database or the platforms.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, field_validator

Severity = Literal["info", "yellow", "red"]
Recipient = Literal["owner", "manager", "team_chat", "finance"]
SEVERITY_RANK = {"info": 0, "yellow": 1, "red": 2}
DORMANT_TAG = "休眠客户"


class StageThreshold(BaseModel):
    yellow_days: int
    red_days: int


class StaleRule(BaseModel):
    yellow_days: int = 20
    red_days: int = 30
    per_stage: dict[str, StageThreshold] = Field(default_factory=dict)
    cooldown_days: int = 3

    def thresholds(self, stage: str) -> StageThreshold:
        return self.per_stage.get(stage) or StageThreshold(yellow_days=self.yellow_days,
                                                          red_days=self.red_days)

    @property
    def min_days(self) -> int:
        """The smallest threshold of any stage: what the database scan must fetch."""
        return min([self.yellow_days] + [t.yellow_days for t in self.per_stage.values()])


class OverdueRule(BaseModel):
    ladder: list[int] = Field(default_factory=lambda: [1, 7, 30])
    red_from: int = 30  # a rung at or above this many days is red
    cooldown_days: int = 7  # same rung again after this many days

    @field_validator("ladder")
    @classmethod
    def _sorted(cls, v: list[int]) -> list[int]:
        if not v or any(d < 1 for d in v):
            raise ValueError("ladder needs positive day counts")
        return sorted(set(v))

    def rung(self, days_overdue: int) -> int:
        """The highest rung reached (0 = none yet)."""
        reached = [d for d in self.ladder if days_overdue >= d]
        return reached[-1] if reached else 0


class DormantRule(BaseModel):
    days: int = 90
    tag: str = DORMANT_TAG


class HealthRule(BaseModel):
    weights: dict[str, float] = Field(default_factory=lambda: {
        "volume": 0.30, "timeliness": 0.25, "response": 0.15, "stability": 0.20,
        "strategic": 0.10})
    grade_a: float = 85
    grade_b: float = 70
    alert_below: float = 70
    volume_full_score: float = 1_000_000  # 12-month won amount that scores 100
    response_full_days: int = 7  # interaction within this many days scores 100 ...
    response_zero_days: int = 90  # ... and none for this many days scores 0

    @field_validator("weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        known = {"volume", "timeliness", "response", "stability", "strategic"}
        if set(v) - known:
            raise ValueError(f"unknown health weights: {sorted(set(v) - known)}")
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("health weights must be non-negative and not all zero")
        return v

    def grade(self, score: float) -> str:
        return "A" if score >= self.grade_a else "B" if score >= self.grade_b else "C"


class DigestRule(BaseModel):
    time: str = "08:30"  # local time, rules.timezone
    top_items: int = 8


class QuietHours(BaseModel):
    start: str = "21:00"
    end: str = "08:00"
    bypass: list[Severity] = Field(default_factory=list)  # severities sent even when quiet


class Route(BaseModel):
    alert: str = "*"
    severity: str = "*"
    team_id: int | None = None
    region: str | None = None
    to: list[Recipient]

    def matches(self, alert: str, severity: str, team_id: int | None, region: str) -> bool:
        return (self.alert in ("*", alert) and self.severity in ("*", severity)
                and (self.team_id is None or self.team_id == team_id)
                and (self.region is None or self.region == region))


DEFAULT_ROUTES: list[dict[str, Any]] = [
    {"alert": "stale", "severity": "red", "to": ["owner", "manager"]},
    {"alert": "stale", "to": ["owner"]},
    {"alert": "overdue", "severity": "red", "to": ["owner", "manager", "finance"]},
    {"alert": "overdue", "to": ["owner"]},
    {"alert": "dormant", "to": ["owner"]},
    {"alert": "health", "to": ["manager"]},
    {"alert": "digest", "to": ["manager"]},
]

DEFAULT_SCHEDULE = {"stale": "09:00", "overdue": "09:05", "dormant": "09:10",
                    "health": "09:15"}


class AlertRules(BaseModel):
    enabled: bool = True
    timezone: str = "Asia/Shanghai"
    stale: StaleRule = Field(default_factory=StaleRule)
    overdue: OverdueRule = Field(default_factory=OverdueRule)
    dormant: DormantRule = Field(default_factory=DormantRule)
    health: HealthRule = Field(default_factory=HealthRule)
    digest: DigestRule = Field(default_factory=DigestRule)
    quiet_hours: QuietHours | None = Field(default_factory=QuietHours)
    routes: list[Route] = Field(default_factory=lambda: [Route(**r) for r in DEFAULT_ROUTES])
    schedule: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SCHEDULE))
    catch_up: bool = False  # on start, run today's jobs whose time has passed and not run
    max_items_per_card: int = 10

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    # -- routing -------------------------------------------------------------------------
    def recipients(self, alert: str, severity: str, team_id: int | None = None,
                   region: str = "") -> list[str]:
        for route in self.routes:
            if route.matches(alert, severity, team_id, region):
                return list(route.to)
        return []

    # -- quiet hours ---------------------------------------------------------------------
    def quiet_until(self, now: datetime, severity: str = "yellow") -> datetime | None:
        """If ``now`` (aware) falls in quiet hours: when they end (aware UTC); else None."""
        q = self.quiet_hours
        if q is None or severity in q.bypass:
            return None
        local = now.astimezone(self.tz)
        start, end = _hm(q.start), _hm(q.end)
        t = local.time()
        if start == end:
            return None
        if start < end:
            quiet = start <= t < end
            end_day = local.date()
        else:  # spans midnight
            quiet = t >= start or t < end
            end_day = local.date() + timedelta(days=1) if t >= start else local.date()
        if not quiet:
            return None
        return datetime.combine(end_day, end, tzinfo=self.tz).astimezone(now.tzinfo)

    def local_day(self, now: datetime) -> str:
        return now.astimezone(self.tz).date().isoformat()

    def fire_time(self, job: str) -> time:
        if job == "digest":
            return _hm(self.digest.time)
        return _hm(self.schedule.get(job, "09:00"))


def _hm(text: str) -> time:
    h, m = text.split(":")
    return time(int(h), int(m))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("per_stage",
                                                                               "weights"):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def load_alert_rules(*overrides: dict[str, Any] | None) -> AlertRules:
    """Defaults, then each override (TOML rules, then the admin's DB row) on top."""
    data: dict[str, Any] = {}
    for o in overrides:
        if o:
            data = _merge(data, o)
    return AlertRules.model_validate(data)


def default_rules() -> AlertRules:
    return AlertRules()
