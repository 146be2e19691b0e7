"""Target periods: a month, quarter or year, named by its first day; computed from a ``today``
passed in (the company's local date), never from the clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

KINDS = ("month", "quarter", "year")
KIND_NAMES = {"month": "月 month", "quarter": "季度 quarter", "year": "年 year"}
_MONTHS = {"month": 1, "quarter": 3, "year": 12}


def add_months(d: date, n: int) -> date:
    """The first of the month ``n`` months after ``d``'s month."""
    y, m = divmod(d.year * 12 + d.month - 1 + n, 12)
    return date(y, m + 1, 1)


def start_of(kind: str, d: date) -> date:
    if kind == "month":
        return d.replace(day=1)
    if kind == "quarter":
        return date(d.year, (d.month - 1) // 3 * 3 + 1, 1)
    if kind == "year":
        return date(d.year, 1, 1)
    raise ValueError(f"unknown period kind {kind!r}: one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class Period:
    kind: str
    start: date

    def __post_init__(self) -> None:
        if start_of(self.kind, self.start) != self.start:
            raise ValueError(f"{self.start} does not start a {self.kind}")

    @classmethod
    def of(cls, kind: str, today: date) -> Period:
        return cls(kind, start_of(kind, today))

    @property
    def next_start(self) -> date:
        return add_months(self.start, _MONTHS[self.kind])

    @property
    def end(self) -> date:
        """The last day (inclusive)."""
        return self.next_start - timedelta(days=1)

    @property
    def days(self) -> int:
        return (self.next_start - self.start).days

    def months(self) -> list[date]:
        return [add_months(self.start, i) for i in range(_MONTHS[self.kind])]

    def previous(self) -> Period:
        return Period(self.kind, add_months(self.start, -_MONTHS[self.kind]))

    def elapsed_share(self, today: date) -> float:
        """Share of the period's days gone by at the end of ``today`` (0 before, 1 after):
        the first day of a 31-day month is 1/31, its last day 1."""
        if today < self.start:
            return 0.0
        if today > self.end:
            return 1.0
        return ((today - self.start).days + 1) / self.days

    @property
    def label(self) -> str:
        if self.kind == "month":
            return f"{self.start:%Y-%m}"
        if self.kind == "quarter":
            return f"{self.start.year} Q{(self.start.month - 1) // 3 + 1}"
        return str(self.start.year)
