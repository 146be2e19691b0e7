"""Admin rules for approvals: which chain a request takes, timers, working and quiet hours.

Defaults live here; the TOML ``[rules.approvals]`` table overrides them; an admin's edits are
stored as versioned ``rules`` rows (``storage.models.Setting``, key ``approvals``). A request
keeps the chain (and version) it started with: steps are materialised at submit time.

Chain choice: the first entry of ``chains`` whose condition matches gives the base chain, then
every matching entry of ``extra`` appends its roles (duplicates dropped). Roles are resolved to
people by role and team (``manager`` = the requester's manager), never by name.

Every rule set is checked on load (``config.rule_checks``), from TOML, the admin console or the
``审批规则`` chat command alike: timers positive and escalation not before the reminder, work
days 0–6, the work day ending after it starts, non-empty amount ranges, known kinds and roles,
a real time zone, no NaN.
"""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.rule_checks import Problems, num

KINDS = ("quote", "discount", "contract", "new_customer")
ROLES = ("manager", "vp", "finance", "admin")
SETTING_KEY = "approvals"


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kinds: list[str] = Field(default_factory=lambda: ["*"])
    amount_gte: float | None = None
    amount_lt: float | None = None
    discount_gt: float | None = None  # percent

    def matches(self, kind: str, amount: float, discount_pct: float | None) -> bool:
        if "*" not in self.kinds and kind not in self.kinds:
            return False
        if self.amount_gte is not None and amount < self.amount_gte:
            return False
        if self.amount_lt is not None and amount >= self.amount_lt:
            return False
        if self.discount_gt is not None and (discount_pct is None
                                             or discount_pct <= self.discount_gt):
            return False
        return True


class ChainRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: Condition = Field(default_factory=Condition)
    steps: list[str]

    @field_validator("steps")
    @classmethod
    def _roles(cls, v: list[str]) -> list[str]:
        bad = [r for r in v if r not in ROLES]
        if bad:
            raise ValueError(f"unknown role(s) {bad}; use {ROLES} / 未知的审批角色")
        return v

    @model_validator(mode="after")
    def _check(self) -> ChainRule:
        """The condition's own mistakes are reported here, under the rule's name."""
        p, w = Problems(), self.when
        bad = [k for k in w.kinds if k != "*" and k not in KINDS]
        if bad:
            p.add("when.kinds", f"类型 {bad} 不存在；可用：{', '.join(KINDS)}, *",
                  f"unknown kind(s) {bad}; use {', '.join(KINDS)}, *", label="")
        for name in ("amount_gte", "amount_lt"):
            v = getattr(w, name)
            if v is not None and v < 0:
                p.add(f"when.{name}", f"金额不能为负（现在 {num(v)}）",
                      f"an amount cannot be negative (now {num(v)})", label="")
        if w.amount_gte is not None and w.amount_lt is not None and w.amount_gte >= w.amount_lt:
            p.add("when.amount_lt", f"金额区间为空（≥ {num(w.amount_gte)} 且 < "
                                    f"{num(w.amount_lt)}）",
                  f"empty amount range (≥ {num(w.amount_gte)} and < {num(w.amount_lt)})",
                  label="")
        if w.discount_gt is not None and not 0 <= w.discount_gt < 100:
            p.add("when.discount_gt", f"折扣必须在 0–100% 之间（现在 {num(w.discount_gt)}）",
                  f"discount_gt must be from 0 to under 100 % (now {num(w.discount_gt)})",
                  label="")
        if not self.steps:
            p.add("steps", f"至少要有一个审批角色（可用：{', '.join(ROLES)}）",
                  f"needs at least one approver role ({', '.join(ROLES)})", label="")
        p.raise_any()
        return self


def _default_chains() -> list[ChainRule]:
    return [
        ChainRule(when=Condition(kinds=["quote", "contract"], amount_lt=50_000),
                  steps=["manager"]),
        ChainRule(when=Condition(kinds=["quote", "contract"], amount_gte=50_000),
                  steps=["manager", "vp"]),
        ChainRule(when=Condition(kinds=["discount"]), steps=["manager"]),
        ChainRule(when=Condition(kinds=["new_customer"]), steps=["manager"]),
        ChainRule(steps=["manager"]),
    ]


def _default_extra() -> list[ChainRule]:
    return [ChainRule(when=Condition(discount_gt=15), steps=["finance"]),
            ChainRule(when=Condition(kinds=["contract"], amount_gte=200_000), steps=["vp"])]


class ApprovalRules(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    version: int = 0  # 0 = the built-in/TOML defaults; stored edits count from 1
    chains: list[ChainRule] = Field(default_factory=_default_chains)
    extra: list[ChainRule] = Field(default_factory=_default_extra)
    remind_after_h: float = 4  # working hours without action → reminder
    escalate_after_h: float = 8  # working hours without action → escalate
    max_escalations: int = 2
    timezone: str = "Asia/Shanghai"
    work_days: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])  # Mon=0
    work_start: time = time(9, 0)
    work_end: time = time(18, 0)
    quiet_start: time = time(22, 0)  # never notify between these, even on a work day
    quiet_end: time = time(8, 0)
    reject_reasons: list[str] = Field(default_factory=lambda: [
        "价格过低 / price too low", "折扣过大 / discount too high",
        "信息不全 / missing details", "其他 / other"])

    @field_validator("reject_reasons")
    @classmethod
    def _reasons(cls, v: list[str]) -> list[str]:
        if not 1 <= len(v) <= 5:  # WeCom draws each reason as a button (≤ 6 with "back")
            raise ValueError("1 to 5 reject reasons / 驳回理由 1 到 5 个")
        return v

    @model_validator(mode="after")
    def _check(self) -> ApprovalRules:
        p = Problems()
        if self.remind_after_h <= 0:
            p.add("remind_after_h", f"提醒时限必须大于 0 小时（现在 {num(self.remind_after_h)}）",
                  f"remind_after_h must be above 0 (now {num(self.remind_after_h)})")
        if self.escalate_after_h < self.remind_after_h:
            p.add("escalate_after_h", f"升级时限不能早于提醒时限（现在 升级 "
                                      f"{num(self.escalate_after_h)} < 提醒 "
                                      f"{num(self.remind_after_h)} 小时）",
                  f"escalate_after_h cannot come before remind_after_h (now "
                  f"{num(self.escalate_after_h)} < {num(self.remind_after_h)})")
        p.at_least("max_escalations", self.max_escalations, 0)
        if not self.work_days or any(d not in range(7) for d in self.work_days):
            p.add("work_days", f"工作日必须是 0–6 之间的数字（现在 {self.work_days[:10]}）",
                  f"work_days must be numbers 0 (Monday) to 6 (now {self.work_days[:10]})")
        if self.work_start >= self.work_end:
            p.add("work_end", f"下班时间必须晚于上班时间（现在 {self.work_start:%H:%M} – "
                              f"{self.work_end:%H:%M}）",
                  f"work_end must be after work_start (now {self.work_start:%H:%M} – "
                  f"{self.work_end:%H:%M})")
        p.timezone("timezone", self.timezone)
        p.raise_any()
        return self

    # -- routing --------------------------------------------------------------------------
    def chain_for(self, kind: str, amount: float, discount_pct: float | None) -> list[str]:
        roles: list[str] = []
        for rule in self.chains:
            if rule.when.matches(kind, amount, discount_pct):
                roles = list(rule.steps)
                break
        for rule in self.extra:
            if rule.when.matches(kind, amount, discount_pct):
                roles += [r for r in rule.steps if r not in roles]
        return roles or ["manager"]

    # -- clocks ---------------------------------------------------------------------------
    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def working_hours_between(self, start: datetime, end: datetime) -> float:
        """Working hours in [start, end): only work days, only inside the work window."""
        if end <= start:
            return 0.0
        tz = self.tz
        a, b = start.astimezone(tz), end.astimezone(tz)
        total = 0.0
        day: date = a.date()
        while day <= b.date():
            if day.weekday() in self.work_days:
                w0 = datetime.combine(day, self.work_start, tz)
                w1 = datetime.combine(day, self.work_end, tz)
                lo, hi = max(a, w0), min(b, w1)
                if hi > lo:
                    total += (hi - lo).total_seconds() / 3600
            day += timedelta(days=1)
        return total

    def may_notify(self, now: datetime) -> bool:
        """Inside working hours on a work day and outside quiet hours."""
        local = now.astimezone(self.tz)
        t = local.time()
        if self.quiet_start > self.quiet_end:
            quiet = t >= self.quiet_start or t < self.quiet_end
        else:
            quiet = self.quiet_start <= t < self.quiet_end
        return (local.weekday() in self.work_days and self.work_start <= t < self.work_end
                and not quiet)


def load_rules(value: dict[str, Any] | None, version: int = 0) -> ApprovalRules:
    """Rules from a TOML table or a stored row; unknown keys are an error (typos matter).

    Parsed once per distinct (value, version): every tap needs them, so the result is shared
    and must be treated as read-only."""
    return _parse(json.dumps(value or {}, sort_keys=True, default=str), version)


@lru_cache(maxsize=64)
def _parse(blob: str, version: int) -> ApprovalRules:
    data = json.loads(blob)
    data["version"] = version
    return ApprovalRules.model_validate(data)
