"""Alert rules: defaults, admin overrides, routing order, quiet hours (pure, no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from config.alert_rules import default_rules, load_alert_rules


def test_defaults_match_the_issue():
    r = default_rules()
    assert (r.stale.yellow_days, r.stale.red_days) == (20, 30)
    assert r.overdue.ladder == [1, 7, 30] and r.dormant.days == 90
    assert r.dormant.tag == "休眠客户"
    assert r.health.weights == {"volume": 0.30, "timeliness": 0.25, "response": 0.15,
                                "stability": 0.20, "strategic": 0.10}
    assert [r.health.grade(s) for s in (85, 84.9, 70, 69.9)] == ["A", "B", "B", "C"]
    assert r.recipients("stale", "yellow") == ["owner"]
    assert r.recipients("stale", "red") == ["owner", "manager"]
    assert r.recipients("overdue", "red") == ["owner", "manager", "finance"]
    assert r.recipients("health", "yellow") == ["manager"]
    assert [r.overdue.rung(d) for d in (0, 1, 6, 7, 29, 30, 400)] == [0, 1, 1, 7, 7, 30, 30]


def test_overrides_merge_over_defaults_and_routes_first_match_wins():
    r = load_alert_rules({"stale": {"red_days": 25}},
                         {"stale": {"per_stage": {"lead": {"yellow_days": 40, "red_days": 60}}},
                          "routes": [{"alert": "stale", "team_id": 3, "to": ["team_chat"]},
                                     {"alert": "*", "region": "华北", "to": ["manager"]},
                                     {"alert": "*", "to": ["owner"]}],
                          "health": {"weights": {"volume": 1, "strategic": 1}}})
    assert (r.stale.yellow_days, r.stale.red_days) == (20, 25)
    assert r.stale.thresholds("lead").red_days == 60 and r.stale.min_days == 20
    assert r.recipients("stale", "red", team_id=3) == ["team_chat"]
    assert r.recipients("overdue", "red", team_id=3, region="华北") == ["manager"]
    assert r.recipients("dormant", "yellow", team_id=9, region="华东") == ["owner"]
    assert r.health.weights == {"volume": 1, "strategic": 1}


@pytest.mark.parametrize("bad", [
    {"health": {"weights": {"luck": 1}}},
    {"health": {"weights": {"volume": 0}}},
    {"overdue": {"ladder": [0, 7]}},
    {"routes": [{"alert": "stale", "to": ["ceo"]}]},
])
def test_invalid_rules_are_refused(bad):
    with pytest.raises(ValidationError):
        load_alert_rules(bad)


def test_quiet_hours_span_midnight_and_bypass():
    r = default_rules()  # 21:00–08:00 Asia/Shanghai
    at = lambda h, m=0: datetime(2026, 6, 1, h, m, tzinfo=UTC)  # noqa: E731 (UTC+8)
    assert r.quiet_until(at(2)) is None  # 10:00 local
    assert r.quiet_until(at(12, 59)) is None  # 20:59
    assert r.quiet_until(at(13)) == datetime(2026, 6, 2, 0, 0, tzinfo=UTC)  # 21:00 → 08:00
    assert r.quiet_until(at(23, 30)) == datetime(2026, 6, 2, 0, 0, tzinfo=UTC)  # 07:30
    assert r.quiet_until(at(0)) is None  # 08:00 sharp: open
    r2 = load_alert_rules({"quiet_hours": {"start": "12:00", "end": "14:00",
                                           "bypass": ["red"]}})
    assert r2.quiet_until(at(5), "yellow") == datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
    assert r2.quiet_until(at(5), "red") is None
    assert load_alert_rules({"quiet_hours": None}).quiet_until(at(15)) is None
