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
                          "health": {"weights": {"volume": 0.5, "strategic": 0.5}}})
    assert (r.stale.yellow_days, r.stale.red_days) == (20, 25)
    assert r.stale.thresholds("lead").red_days == 60 and r.stale.min_days == 20
    assert r.recipients("stale", "red", team_id=3) == ["team_chat"]
    assert r.recipients("overdue", "red", team_id=3, region="华北") == ["manager"]
    assert r.recipients("dormant", "yellow", team_id=9, region="华东") == ["owner"]
    assert r.health.weights == {"volume": 0.5, "strategic": 0.5}


@pytest.mark.parametrize("bad", [
    {"health": {"weights": {"luck": 1}}},
    {"health": {"weights": {"volume": 0}}},
    {"overdue": {"ladder": [0, 7]}},
    {"routes": [{"alert": "stale", "to": ["ceo"]}]},
])
def test_invalid_rules_are_refused(bad):
    with pytest.raises(ValidationError):
        load_alert_rules(bad)


@pytest.mark.parametrize(("bad", "where", "words"), [
    ({"stale": {"yellow_days": -3}}, "stale", "must be at least 1 (now -3)"),
    ({"stale": {"yellow_days": 20, "red_days": 15}}, "stale",
     "停滞红色阈值必须大于黄色阈值（现在 红 15 天 ≤ 黄 20 天）"),
    ({"stale": {"cooldown_days": -1}}, "stale", "cooldown_days: 不能小于 0"),
    ({"stale": {"per_stage": {"lead": {"yellow_days": 9, "red_days": 9}}}}, "stale.per_stage",
     "red_days must be above yellow_days (now 9 ≤ 9)"),
    ({"stale": {"per_stage": {"lead": {"yellow_days": 0, "red_days": 5}}}}, "stale.per_stage",
     "yellow_days: 不能小于 1"),
    ({"stale": {"per_stage": {"won": {"yellow_days": 5, "red_days": 9}}}}, "stale",
     "unknown stage 'won'"),
    ({"overdue": {"red_from": 0}}, "overdue", "red_from: 不能小于 1"),
    ({"overdue": {"cooldown_days": -7}}, "overdue", "must be at least 0 (now -7)"),
    ({"dormant": {"days": 0}}, "dormant", "days: 不能小于 1"),
    ({"health": {"weights": {"volume": 0.5, "strategic": 0.4}}}, "health",
     "health weights must sum to 100 % (now 90 %)"),
    ({"health": {"weights": {"volume": 30, "timeliness": 25, "response": 15, "stability": 20,
                             "strategic": 10}}},  # percent where fractions belong
     "health", "健康分权重合计必须为 100%（现在 10000%）"),
    ({"health": {"grade_a": 60, "grade_b": 70}}, "health", "grade_a must be above grade_b"),
    ({"health": {"grade_a": 120}}, "health", "must be between 0 and 100 (now 120)"),
    ({"health": {"alert_below": -1}}, "health", "alert_below: 必须在 0 到 100 之间"),
    ({"health": {"volume_full_score": 0}}, "health", "满分交易额必须大于 0"),
    ({"health": {"volume_full_score": "nan"}}, "health", "finite number"),
    ({"health": {"response_full_days": 30, "response_zero_days": 30}}, "health",
     "response_zero_days must be above response_full_days"),
    ({"digest": {"time": "25:00"}}, "digest", "must be a time HH:MM from 00:00 to 23:59"),
    ({"digest": {"top_items": 0}}, "digest", "top_items: 不能小于 1"),
    ({"quiet_hours": {"start": "21:60", "end": "08:00"}}, "quiet_hours", "start: 时间格式"),
    ({"quiet_hours": {"start": "21:00", "end": "8点"}}, "quiet_hours", "end: 时间格式"),
    ({"schedule": {"stale": "24:00"}}, "schedule", "stale: 时间格式应为 HH:MM"),
    ({"routes": [{"alert": "stail", "to": ["owner"]}]}, "routes.0", "unknown alert 'stail'"),
    ({"routes": [{"alert": "stale", "severity": "orange", "to": ["owner"]}]}, "routes.0",
     "级别「orange」不存在"),
    ({"routes": [{"alert": "stale", "to": []}]}, "routes.0", "needs at least one recipient"),
    ({"max_items_per_card": 0}, "max_items_per_card", "must be at least 1 (now 0)"),
    ({"timezone": "Mars/Olympus"}, "timezone", "时区「Mars/Olympus」不存在"),
    ({"timezone": ""}, "timezone", "unknown time zone"),
])
def test_the_schema_refuses_each_policy_mistake(bad, where, words):
    """The invariants live in the schema, so TOML and the chat command are refused too — with
    the place (pydantic's location) and the mistake in Chinese and English."""
    with pytest.raises(ValidationError) as caught:
        load_alert_rules(bad)
    errors = caught.value.errors(include_url=False)
    assert len(errors) == 1, errors
    assert ".".join(str(p) for p in errors[0]["loc"]).startswith(where)
    assert words in str(caught.value)


def test_every_mistake_of_a_section_is_reported_at_once():
    with pytest.raises(ValidationError) as caught:
        load_alert_rules({"health": {"grade_a": 50, "grade_b": 60, "volume_full_score": -1},
                          "timezone": "Nowhere/City"})
    errors = caught.value.errors(include_url=False)
    problems = {(e["loc"], p["field"]) for e in errors for p in e["ctx"]["problems"]}
    assert problems == {(("health",), "grade_a"), (("health",), "volume_full_score"),
                        (("timezone",), "")}
    assert load_alert_rules({"health": {"grade_a": 90, "grade_b": 60}}).health.grade_a == 90


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
