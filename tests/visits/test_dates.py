"""Relative dates with a fixed today: Wednesday 2024-05-15."""

from __future__ import annotations

from datetime import date

import pytest

from bot.dates import add_months, find_date, parse_date

pytestmark = pytest.mark.dates  # expectations relative to today: see tests/conftest.py

TODAY = date(2024, 5, 15)  # a Wednesday


@pytest.mark.parametrize("text,expected", [
    ("明天再去", date(2024, 5, 16)),
    ("后天", date(2024, 5, 17)),
    ("大后天上午", date(2024, 5, 18)),
    ("下周二带样品", date(2024, 5, 21)),
    ("下星期五", date(2024, 5, 24)),
    ("下下周一", date(2024, 5, 27)),
    ("周五前回复", date(2024, 5, 17)),
    ("周三", date(2024, 5, 15)),  # today is Wednesday
    ("周一", date(2024, 5, 20)),  # the next Monday, never a past one
    ("礼拜天", date(2024, 5, 19)),
    ("3天后", date(2024, 5, 18)),
    ("三天后", date(2024, 5, 18)),
    ("十天以后", date(2024, 5, 25)),
    ("两周后", date(2024, 5, 29)),
    ("一个月后", date(2024, 6, 15)),
    ("月底前签", date(2024, 5, 31)),
    ("下个月", date(2024, 6, 15)),
    ("下月初", date(2024, 6, 1)),
    ("下月底", date(2024, 6, 30)),
    ("6月1日交货", date(2024, 6, 1)),
    ("六月三号", date(2024, 6, 3)),
    ("2024-07-08", date(2024, 7, 8)),
    ("next Tuesday", date(2024, 5, 21)),
    ("see you tomorrow", date(2024, 5, 16)),
    ("the day after tomorrow", date(2024, 5, 17)),
    ("in 3 days", date(2024, 5, 18)),
    ("in two weeks", date(2024, 5, 29)),
    ("call back in a month", date(2024, 6, 15)),
    ("end of month", date(2024, 5, 31)),
    ("Friday", date(2024, 5, 17)),
    ("next week", date(2024, 5, 20)),
])
def test_relative_dates(text, expected):
    assert parse_date(text, TODAY) == expected


@pytest.mark.parametrize("text", ["", "没有日期", "2月30日", "星期", "the sun is out",
                                  "聊了 3 个方案"])
def test_no_date(text):
    assert parse_date(text, TODAY) is None


def test_first_date_wins_and_words_are_returned():
    assert find_date("明天先打电话，下周二再去", TODAY) == (date(2024, 5, 16), "明天")
    assert find_date("下周二再去", TODAY) == (date(2024, 5, 21), "下周二")


def test_month_arithmetic_clamps():
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2024, 12, 15), 1) == date(2025, 1, 15)
    assert parse_date("月底", date(2024, 2, 10)) == date(2024, 2, 29)
    assert parse_date("下个月", date(2024, 1, 31)) == date(2024, 2, 29)


def test_next_step_is_the_first_date_after_today():
    from bot.dates import next_step_date

    today = date(2026, 12, 1)  # a Tuesday
    assert next_step_date("今天拜访了华东精密，明天再确认", today) == date(2026, 12, 2)
    assert next_step_date("今天拜访了华东精密，下周二带样品", today) == date(2026, 12, 8)
    assert next_step_date("今天拜访了华东精密", today) is None
