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

Every rule set is checked on load (``config.rule_checks``), whichever way it comes: no
negative days, red above yellow, health weights summing to 100 %, times 00:00–23:59, no zero
the health score divides by, known stages / alert kinds / time zone, no NaN.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from config.rule_checks import Problems, num

Severity = Literal["info", "yellow", "red"]
Recipient = Literal["owner", "manager", "team_chat", "finance"]
SEVERITY_RANK = {"info": 0, "yellow": 1, "red": 2}
DORMANT_TAG = "休眠客户"
OPEN_STAGES = ("lead", "qualified", "proposal", "negotiation")  # where a deal can go stale
ALERT_KINDS = ("stale", "overdue", "dormant", "health", "digest", "*")
ROUTE_SEVERITIES = ("*", "info", "yellow", "red")


class StageThreshold(BaseModel):
    yellow_days: int
    red_days: int

    @model_validator(mode="after")
    def _check(self) -> StageThreshold:
        p = Problems()
        p.at_least("yellow_days", self.yellow_days, 1)
        if self.red_days <= self.yellow_days:
            p.add("red_days", f"必须大于黄色阈值（现在 红 {self.red_days} 天 ≤ 黄 "
                              f"{self.yellow_days} 天）",
                  f"red_days must be above yellow_days (now {self.red_days} ≤ "
                  f"{self.yellow_days})", label="red_days")
        p.raise_any()
        return self


class StaleRule(BaseModel):
    yellow_days: int = 20
    red_days: int = 30
    per_stage: dict[str, StageThreshold] = Field(default_factory=dict)
    cooldown_days: int = 3

    @model_validator(mode="after")
    def _check(self) -> StaleRule:
        p = Problems()
        p.at_least("yellow_days", self.yellow_days, 1)
        p.at_least("red_days", self.red_days, 1)
        p.at_least("cooldown_days", self.cooldown_days, 0)
        if self.red_days <= self.yellow_days:
            p.add("red_days", f"停滞红色阈值必须大于黄色阈值（现在 红 {self.red_days} 天 ≤ 黄 "
                              f"{self.yellow_days} 天）",
                  f"stale red_days must be above yellow_days (now {self.red_days} ≤ "
                  f"{self.yellow_days})")
        for stage in self.per_stage:
            if stage not in OPEN_STAGES:
                p.add(f"per_stage.{stage}", f"阶段「{stage[:20]}」不存在；可用："
                                            f"{', '.join(OPEN_STAGES)}",
                      f"unknown stage {stage[:20]!r}; use {', '.join(OPEN_STAGES)}")
        p.raise_any()
        return self

    def thresholds(self, stage: str) -> StageThreshold:
        # called per deal by the scans; the two numbers were checked with this rule already
        return self.per_stage.get(stage) or StageThreshold.model_construct(
            yellow_days=self.yellow_days, red_days=self.red_days)

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
            raise ValueError("ladder needs positive day counts / 阶梯天数必须是正整数")
        return sorted(set(v))

    @model_validator(mode="after")
    def _check(self) -> OverdueRule:
        p = Problems()
        p.at_least("red_from", self.red_from, 1)
        p.at_least("cooldown_days", self.cooldown_days, 0)
        p.raise_any()
        return self

    def rung(self, days_overdue: int) -> int:
        """The highest rung reached (0 = none yet)."""
        reached = [d for d in self.ladder if days_overdue >= d]
        return reached[-1] if reached else 0


class DormantRule(BaseModel):
    days: int = 90
    tag: str = DORMANT_TAG

    @model_validator(mode="after")
    def _check(self) -> DormantRule:
        p = Problems()
        p.at_least("days", self.days, 1)
        p.raise_any()
        return self


class HealthRule(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

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
            raise ValueError(f"unknown health weights: {sorted(set(v) - known)} / 未知的健康分"
                             f"权重；可用：{', '.join(sorted(known))}")
        if any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("health weights must be non-negative and not all zero / 健康分权重"
                             "不能为负，也不能全为 0")
        return v

    @model_validator(mode="after")
    def _check(self) -> HealthRule:
        p = Problems()
        total = sum(self.weights.values()) * 100
        if abs(total - 100) > 0.01:
            p.add("weights", f"健康分权重合计必须为 100%（现在 {num(round(total, 2))}%）",
                  f"health weights must sum to 100 % (now {num(round(total, 2))} %)")
        for name in ("grade_a", "grade_b", "alert_below"):
            v = getattr(self, name)
            if not 0 <= v <= 100:
                p.add(name, f"必须在 0 到 100 之间（现在 {num(v)}）",
                      f"must be between 0 and 100 (now {num(v)})", label=name)
        if self.grade_a <= self.grade_b:
            p.add("grade_a", f"A 级分数线必须高于 B 级（现在 A {num(self.grade_a)} ≤ "
                             f"B {num(self.grade_b)}）",
                  f"grade_a must be above grade_b (now {num(self.grade_a)} ≤ "
                  f"{num(self.grade_b)})")
        if self.volume_full_score <= 0:  # the volume score divides by it
            p.add("volume_full_score", f"满分交易额必须大于 0（现在 "
                                       f"{num(self.volume_full_score)}）",
                  f"volume_full_score must be above 0 (now {num(self.volume_full_score)})")
        p.at_least("response_full_days", self.response_full_days, 0)
        if self.response_zero_days <= self.response_full_days:
            p.add("response_zero_days", f"响应零分天数必须大于满分天数（现在 "
                                        f"{self.response_zero_days} ≤ {self.response_full_days}）",
                  f"response_zero_days must be above response_full_days (now "
                  f"{self.response_zero_days} ≤ {self.response_full_days})")
        p.raise_any()
        return self

    def grade(self, score: float) -> str:
        return "A" if score >= self.grade_a else "B" if score >= self.grade_b else "C"


class DigestRule(BaseModel):
    time: str = "08:30"  # local time, rules.timezone
    top_items: int = 8

    @model_validator(mode="after")
    def _check(self) -> DigestRule:
        p = Problems()
        p.hhmm("time", self.time)
        p.at_least("top_items", self.top_items, 1)
        p.raise_any()
        return self


class QuietHours(BaseModel):
    start: str = "21:00"
    end: str = "08:00"
    bypass: list[Severity] = Field(default_factory=list)  # severities sent even when quiet

    @model_validator(mode="after")
    def _check(self) -> QuietHours:
        p = Problems()
        p.hhmm("start", self.start)
        p.hhmm("end", self.end)
        p.raise_any()
        return self


class Route(BaseModel):
    alert: str = "*"
    severity: str = "*"
    team_id: int | None = None
    region: str | None = None
    to: list[Recipient]

    @model_validator(mode="after")
    def _check(self) -> Route:
        p = Problems()
        if self.alert not in ALERT_KINDS:
            p.add("alert", f"提醒类型「{self.alert[:20]}」不存在；可用：{', '.join(ALERT_KINDS)}",
                  f"unknown alert {self.alert[:20]!r}; use {', '.join(ALERT_KINDS)}", label="")
        if self.severity not in ROUTE_SEVERITIES:
            p.add("severity", f"级别「{self.severity[:20]}」不存在；可用："
                              f"{', '.join(ROUTE_SEVERITIES)}",
                  f"unknown severity {self.severity[:20]!r}; use {', '.join(ROUTE_SEVERITIES)}",
                  label="")
        if not self.to:
            p.add("to", "至少要有一个接收方", "needs at least one recipient", label="")
        p.raise_any()
        return self

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
                    "health": "09:15", "forecast": "08:45", "close_dates": "09:20"}
# jobs that fire on one day of the week only (APScheduler ``day_of_week``); the rest daily
WEEKLY_JOBS = {"forecast": "mon"}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


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

    # a field validator, not a model one: it runs even when a section above has a mistake
    @field_validator("schedule", "max_items_per_card", "timezone")
    @classmethod
    def _top_level(cls, v: Any, info: ValidationInfo) -> Any:
        p = Problems()
        if info.field_name == "schedule":
            for job, at in v.items():
                p.hhmm(job, at)
        elif info.field_name == "timezone":
            p.timezone("", v)
        else:
            p.at_least("", v, 1)
        p.raise_any()
        return v

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
        return _hm(self.schedule.get(job, DEFAULT_SCHEDULE.get(job, "09:00")))

    def fire_day(self, job: str) -> str | None:
        """The weekday a weekly job fires on (``"mon"``), None for a daily job."""
        return WEEKLY_JOBS.get(job)

    def fires_on(self, job: str, day: date) -> bool:
        d = self.fire_day(job)
        return d is None or WEEKDAYS[day.weekday()] == d


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
