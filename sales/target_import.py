"""Targets from a table (CSV or .xlsx, read by the caller): columns ``scope`` (user|team),
``name``, ``kind`` (month|quarter|year), ``start`` (any day of the period), ``metric``
(won|collected|visits), ``value``. Every row is checked first; one bad row and nothing is
written, with every problem named by its row number."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlmodel import select

from sales.periods import KINDS, Period, start_of
from sales.targets import METRICS, SCOPES, Actor, set_target
from storage.models import Team, User

COLUMNS = ("scope", "name", "kind", "start", "metric", "value")
MAX_ROWS = 20_000


@dataclass
class ImportResult:
    rows: int = 0
    changed: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)  # (row number, message)

    @property
    def ok(self) -> bool:
        return not self.problems


def _day(cell: Any) -> date:
    if isinstance(cell, datetime):
        return cell.date()
    if isinstance(cell, date):
        return cell
    text = str(cell or "").strip()
    return date.fromisoformat(text + "-01" if len(text) == 7 else text)


async def import_targets(db, header: list[str], rows: Iterable[list[Any]], actor: Actor
                         ) -> ImportResult:
    out = ImportResult()
    cols = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c not in cols]
    if missing:
        out.problems.append((1, "缺少列 / missing columns: " + ", ".join(missing)))
        return out
    at = {c: cols.index(c) for c in COLUMNS}
    users = {}
    for uid, name in (await db.exec(select(User.id, User.name).where(User.active))).all():
        users.setdefault(name, []).append(uid)
    teams = {}
    for tid, name in (await db.exec(select(Team.id, Team.name))).all():
        teams.setdefault(name, []).append(tid)
    cells = []
    for n, row in enumerate(rows, start=2):
        if not any(str(c or "").strip() for c in row):
            continue
        out.rows += 1
        if out.rows > MAX_ROWS:
            out.problems.append((n, f"最多 {MAX_ROWS} 行 / at most {MAX_ROWS} rows"))
            break
        get = {c: (row[i] if i < len(row) else None) for c, i in at.items()}
        scope = str(get["scope"] or "").strip().lower()
        kind = str(get["kind"] or "").strip().lower()
        metric = str(get["metric"] or "").strip().lower()
        name = str(get["name"] or "").strip()
        bad = []
        if scope not in SCOPES:
            bad.append("scope 须为 user 或 team / must be user or team")
        if kind not in KINDS:
            bad.append("kind 须为 month/quarter/year")
        if metric not in METRICS:
            bad.append("metric 须为 won/collected/visits")
        try:
            value = float(str(get["value"]).replace(",", "").strip())
            if not 0 <= value <= 1e12:
                raise ValueError
        except (TypeError, ValueError):
            bad.append("value 须为 0 到 1e12 的数字 / a number from 0 to 1e12")
        try:
            day = _day(get["start"])
            if not 1970 <= day.year <= 2200:
                raise ValueError
        except (TypeError, ValueError):
            bad.append("start 须为日期 YYYY-MM-DD / a date")
        ids = (users if scope == "user" else teams).get(name, []) if scope in SCOPES else []
        if scope in SCOPES and len(ids) != 1:
            bad.append(f"{'未知' if not ids else '重名'}的{scope}「{name[:40]}」 / "
                       f"{'unknown' if not ids else 'ambiguous'} {scope}")
        if bad:
            out.problems += [(n, b) for b in bad]
            continue
        cells.append((scope, ids[0], Period(kind, start_of(kind, day)), metric, value))
    if out.problems:
        return out
    for scope, sid, period, metric, value in cells:
        out.changed += await set_target(db, scope=scope, scope_id=sid, period=period,
                                        metric=metric, value=value, actor=actor) is not None
    return out
