"""One spreadsheet cell → one typed value, or a ``CellError`` whose message a sales admin
understands. Shared by the importer (files) and nothing else; the API validates with pydantic.

Accepted forms are the ones Excel and WPS actually produce: ``2026-12-01``, ``2026/12/1``,
``2026.12.1``, real date cells, Excel serial day numbers; amounts with thousands separators
or a ``¥`` sign.
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

LOCAL_TZ = ZoneInfo("Asia/Shanghai")  # a naive time in a sheet is China time
MAX_AMOUNT = 1e12  # ¥1 trillion: anything larger is a typo (or an attack), not a deal
EXCEL_EPOCH = date(1899, 12, 30)
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d", "%Y年%m月%d日")
DATETIME_FORMATS = ("%Y/%m/%d %H:%M", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M",
                    "%Y-%m-%d %H:%M:%S")


class CellError(ValueError):
    """A bad cell; the message is shown in the import report."""


def text(v: Any, max_len: int = 200) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)  # a phone number typed into Excel comes back as 13800000001.0
    if isinstance(v, datetime | date):
        v = v.isoformat()
    s = str(v).strip()
    if "\x00" in s:
        raise CellError("含有非法字符 / contains a NUL character")
    if len(s) > max_len:
        raise CellError(f"太长（最多 {max_len} 字）/ longer than {max_len} characters")
    return s


def number(v: Any, *, integer: bool = False, low: float = 0, high: float = MAX_AMOUNT
           ) -> float:
    if isinstance(v, bool):
        raise CellError("不是数字 / not a number")
    if isinstance(v, int | float):
        x = float(v)
    else:
        s = text(v).replace(",", "").replace("，", "").replace("¥", "").replace("￥", "")
        s = s.replace(" ", "")
        try:
            x = float(s)
        except ValueError:
            raise CellError(f"不是数字 / not a number: {text(v)[:40]!r}") from None
    if not math.isfinite(x):
        raise CellError("不是有限的数字 / not a finite number")
    if x < low or x > high:
        raise CellError(f"超出范围 {low:g}–{high:g} / out of range {low:g}–{high:g}")
    if integer and not x.is_integer():
        raise CellError("必须是整数 / must be a whole number")
    return x


def _serial(x: float) -> date:
    if not 1 <= x <= 2958465:
        raise CellError("不是日期 / not a date")
    return EXCEL_EPOCH + timedelta(days=int(x))


def a_date(v: Any) -> date:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return _serial(float(v))
    s = text(v)
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(s, fmt).date()
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(s).date()
    except ValueError:
        pass
    raise CellError(f"日期无法识别（如 2026-12-01）/ not a date like 2026-12-01: {s[:40]!r}")


def a_datetime(v: Any) -> datetime:
    """Aware UTC; a naive value is China time (what a person typing it means)."""
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, date):
        dt = datetime.combine(v, time())
    elif isinstance(v, int | float) and not isinstance(v, bool):
        dt = datetime.combine(_serial(float(v)), time())
    else:
        s = text(v)
        dt = None
        try:
            dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            for fmt in DATETIME_FORMATS:
                try:
                    dt = datetime.strptime(s, fmt)
                    break
                except ValueError:
                    continue
        if dt is None:
            dt = datetime.combine(a_date(s), time())
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=LOCAL_TZ)
    return dt.astimezone(UTC)


def split_list(v: Any) -> list[str]:
    """``a; b；c`` → ["a", "b", "c"] (the Chinese semicolon too), order kept, no repeats."""
    s = text(v, max_len=2000).replace("；", ";")
    out: list[str] = []
    for part in s.split(";"):
        part = part.strip()
        if part and part not in out:
            if len(part) > 100:
                raise CellError("某一项太长（最多 100 字）/ an item is longer than 100 chars")
            out.append(part)
    return out
