"""Relative dates in Chinese and English chat: 明天, 下周二, 3天后, 月底, next Tuesday, in 3 days.

``find_date(text, today)`` returns the first date the text names (with the words that named
it), ``parse_date`` just the date. Pure: ``today`` is always passed in, so the same note parses
the same way in a test, a worker and the CLI. Week starts on Monday (周一); a bare weekday
(周五, Friday) is the next one on or after today; 下周X is X in the following calendar week.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, timedelta

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}
_WEEKDAY_CN = {"一": 0, "1": 0, "二": 1, "2": 1, "三": 2, "3": 2, "四": 3, "4": 3, "五": 4,
               "5": 4, "六": 5, "6": 5, "日": 6, "天": 6, "七": 6, "7": 6}
_WEEKDAY_EN = {"monday": 0, "mon": 0, "tuesday": 1, "tue": 1, "tues": 1, "wednesday": 2,
               "wed": 2, "thursday": 3, "thu": 3, "thur": 3, "thurs": 3, "friday": 4, "fri": 4,
               "saturday": 5, "sat": 5, "sunday": 6, "sun": 6}
_EN_NUM = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
           "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
           "fourteen": 14, "fifteen": 15, "twenty": 20, "thirty": 30, "couple": 2, "few": 3}

_MD = r"(\d{1,2}|[一二三四五六七八九十]{1,3})"
_NUM = r"(\d{1,3}|[零〇一二两三四五六七八九十]{1,3})"
_WD = r"(?:周|星期|礼拜)([一二三四五六日天1-7])"
_EN_WD = r"(" + "|".join(sorted(_WEEKDAY_EN, key=len, reverse=True)) + r")\b"
_EN_WD_FULL = r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b"
_EN_N = r"(\d{1,3}|" + "|".join(sorted(_EN_NUM, key=len, reverse=True)) + r")"

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [(name, re.compile(rx, re.I)) for name, rx in [
    ("iso", r"(\d{4})[-/.年](\d{1,2})[-/.月](\d{1,2})[日号]?"),
    ("md_cn", _MD + r"月" + _MD + r"[日号]"),
    ("n_later_cn", _NUM + r"\s*(个)?\s*(天|日|周|星期|礼拜|个月|月)(?:以?后|之后)"),
    ("after_n_en", r"\bin\s+(?:a\s+)?" + _EN_N + r"\s+(days?|weeks?|months?)\b"),
    ("n_later_en", r"\b" + _EN_N + r"\s+(days?|weeks?|months?)\s+(?:later|from\s+now)\b"),
    ("next_wd_cn", r"(下下|下个?|这个?|本)" + _WD),
    ("wd_cn", _WD),
    ("next_wd_en", r"\b(next|this|on|coming)\s+" + _EN_WD),
    ("wd_en", r"\b" + _EN_WD_FULL),
    ("rel_cn", r"(大后天|后天|明天|明日|明早|明晚|今天|今日|今晚|下周|下星期|下礼拜|下下周|"
               r"下个?月初|下个?月底|下个?月末|下个?月|本?月底|本?月末|这个?月底)"),
    ("rel_en", r"\b(day\s+after\s+tomorrow|tomorrow|today|tonight|next\s+week|next\s+month|"
               r"end\s+of\s+(?:the\s+)?(?:this\s+)?month|end\s+of\s+next\s+month|"
               r"month\s+end|eom)\b"),
]]


def _cn_int(s: str) -> int:
    if s.isdigit():
        return int(s)
    if s in _CN_DIGITS:
        return _CN_DIGITS[s]
    if "十" in s:
        tens, _, ones = s.partition("十")
        return (_CN_DIGITS.get(tens, 1) if tens else 1) * 10 + (_CN_DIGITS.get(ones, 0)
                                                              if ones else 0)
    return int("".join(str(_CN_DIGITS[c]) for c in s))


def _en_int(s: str) -> int:
    return int(s) if s.isdigit() else _EN_NUM[s.lower()]


def add_months(d: date, n: int) -> date:
    y, m = divmod(d.month - 1 + n, 12)
    y += d.year
    m += 1
    return date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def end_of_month(d: date) -> date:
    return date(d.year, d.month, calendar.monthrange(d.year, d.month)[1])


def _week_monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def _next_weekday(today: date, wd: int) -> date:
    return today + timedelta(days=(wd - today.weekday()) % 7)


def _resolve(kind: str, m: re.Match[str], today: date) -> date | None:
    g = m.groups()
    if kind == "iso":
        return date(int(g[0]), int(g[1]), int(g[2]))
    if kind == "md_cn":
        mo, dd = _cn_int(g[0]), _cn_int(g[1])
        d = date(today.year, mo, dd)
        return d if d >= today - timedelta(days=31) else date(today.year + 1, mo, dd)
    if kind == "n_later_cn":
        n, unit = _cn_int(g[0]), g[2]
        if unit in ("天", "日"):
            return today + timedelta(days=n)
        if unit in ("周", "星期", "礼拜"):
            return today + timedelta(weeks=n)
        return add_months(today, n)
    if kind in ("after_n_en", "n_later_en"):
        n, unit = _en_int(g[0]), g[1].lower()
        if unit.startswith("day"):
            return today + timedelta(days=n)
        if unit.startswith("week"):
            return today + timedelta(weeks=n)
        return add_months(today, n)
    if kind == "next_wd_cn":
        wd = _WEEKDAY_CN[g[1]]
        weeks = {"下下": 2, "下": 1, "下个": 1}.get(g[0], 0)
        return _week_monday(today) + timedelta(weeks=weeks, days=wd) if weeks else \
            _next_weekday(today, wd)
    if kind == "wd_cn":
        return _next_weekday(today, _WEEKDAY_CN[g[0]])
    if kind == "next_wd_en":
        wd = _WEEKDAY_EN[g[1].lower()]
        if g[0].lower() == "next":
            return _week_monday(today) + timedelta(weeks=1, days=wd)
        return _next_weekday(today, wd)
    if kind == "wd_en":
        return _next_weekday(today, _WEEKDAY_EN[g[0].lower()])
    if kind == "rel_cn":
        w = g[0]
        fixed = {"今天": 0, "今日": 0, "今晚": 0, "明天": 1, "明日": 1, "明早": 1, "明晚": 1,
                 "后天": 2, "大后天": 3}
        if w in fixed:
            return today + timedelta(days=fixed[w])
        if w in ("下周", "下星期", "下礼拜"):
            return _week_monday(today) + timedelta(weeks=1)
        if w == "下下周":
            return _week_monday(today) + timedelta(weeks=2)
        if w.startswith("下") and w.endswith("初"):
            return add_months(today.replace(day=1), 1)
        if w.startswith("下") and w[-1] in "底末":
            return end_of_month(add_months(today.replace(day=1), 1))
        if w.startswith("下"):
            return add_months(today, 1)
        return end_of_month(today)  # 月底 / 本月底 / 这个月底
    if kind == "rel_en":
        w = re.sub(r"\s+", " ", g[0].lower())
        if w in ("today", "tonight"):
            return today
        if w == "tomorrow":
            return today + timedelta(days=1)
        if w == "day after tomorrow":
            return today + timedelta(days=2)
        if w == "next week":
            return _week_monday(today) + timedelta(weeks=1)
        if w == "next month":
            return add_months(today, 1)
        if w == "end of next month":
            return end_of_month(add_months(today.replace(day=1), 1))
        return end_of_month(today)
    return None  # pragma: no cover


def find_date(text: str, today: date) -> tuple[date, str] | None:
    """The first date named in ``text`` (leftmost; the longest pattern on a tie) and the words
    that named it; None when there is none or it is not a real date (2月30日)."""
    best: tuple[int, int, date, str] | None = None
    for kind, rx in _PATTERNS:
        for m in rx.finditer(text or ""):
            try:
                d = _resolve(kind, m, today)
            except (ValueError, KeyError):
                continue
            if d is None:
                continue
            key = (m.start(), -(m.end() - m.start()))
            if best is None or key < (best[0], best[1]):
                best = (key[0], key[1], d, m.group(0))
            break
    return (best[2], best[3]) if best else None


def parse_date(text: str, today: date) -> date | None:
    found = find_date(text, today)
    return found[0] if found else None


def next_step_date(text: str, today: date) -> date | None:
    """The first date in ``text`` after today: "今天拜访了…，下周二再跟进" → next Tuesday."""
    rest = text
    while rest:
        found = find_date(rest, today)
        if found is None:
            return None
        when, words = found
        if when > today:
            return when
        cut = rest.find(words) if words else -1
        if cut < 0:
            return None
        rest = rest[cut + len(words):]
    return None
