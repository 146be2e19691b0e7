"""Deal stage history: the one place a deal's stage, amount, owner or expected close date
changes, so every change becomes exactly one ``deal_history`` row with who and from where.

Every writer (chat, card, mini-app, API/ERP, CSV import) calls ``change_deal`` for a deal it
holds as an ORM row, or ``record_inserted`` after a bulk Core insert of new deals. A field set
to the value it already has records nothing, so calling twice with the same values is a no-op.

Safety net: a session hook records, with source ``system``, any ORM write of a deal that did
not go through ``change_deal`` (e.g. the demo seed), so no ORM writer can skip the history.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import bindparam, event, insert, inspect, text
from sqlalchemy.orm import Session

from storage.models import Deal, UTCDateTime
from storage.sales_models import SOURCES, DealHistory

# Deal attribute -> the ``field`` label its history rows carry.
TRACKED = {"stage": "stage", "amount": "amount", "owner_id": "owner",
           "expected_close": "expected_close"}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def _check(source: str) -> None:
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: one of {', '.join(SOURCES)}")


async def change_deal(session, deal: Deal, *, who: int | str | None, source: str,
                      at: datetime | None = None, **values: Any) -> dict[str, list]:
    """Set ``values`` on ``deal`` (new when it has no id yet) and add one history row per
    tracked field whose value changed; a new deal gets one ``stage`` row (old NULL).

    Returns ``{attribute: [old, new]}`` of what changed (for the caller's audit row). The
    caller commits."""
    _check(source)
    at = at or datetime.now(UTC)
    who_s = "" if who is None else str(who)
    _marked(session).add(id(deal))
    if deal.id is None:
        for k, v in values.items():
            setattr(deal, k, v)
        session.add(deal)
        await session.flush()
        session.add(DealHistory(deal_id=deal.id, field="stage", old=None, new=deal.stage,
                                who=who_s, source=source, at=at))
        return {"created": [None, True]}
    changes: dict[str, list] = {}
    for k, v in values.items():
        old = getattr(deal, k)
        if old == v:
            continue
        changes[k] = [old, v]
        setattr(deal, k, v)
        if k in TRACKED:
            session.add(DealHistory(deal_id=deal.id, field=TRACKED[k], old=_text(old),
                                    new=_text(v), who=who_s, source=source, at=at))
    return changes


# Deals in an id range that have no stage row yet: each gets exactly one, however often run.
_INSERTED = text(
    "INSERT INTO deal_history (deal_id, field, old, new, who, source, at) "
    "SELECT d.id, 'stage', NULL, d.stage, :who, :source, :at FROM deals d "
    "WHERE d.id > :after AND NOT EXISTS (SELECT 1 FROM deal_history h "
    "WHERE h.deal_id = d.id AND h.field = 'stage')"
).bindparams(bindparam("at", type_=UTCDateTime()))


async def record_inserted(conn, *, after_id: int, who: int | str | None, source: str,
                          at: datetime) -> int:
    """After a bulk insert of new deals (ids above ``after_id``): one ``stage`` row each, in
    one INSERT … SELECT. Returns the number of rows added."""
    _check(source)
    res = await conn.execute(_INSERTED, {"who": "" if who is None else str(who),
                                         "source": source, "at": at, "after": after_id})
    return int(res.rowcount or 0)


# -- the safety net -----------------------------------------------------------------------
MARK = "deal_history_marked"


def _marked(session) -> set[int]:
    sync = getattr(session, "sync_session", session)
    return sync.info.setdefault(MARK, set())


@event.listens_for(Session, "before_flush")
def _record_dirty(session, _ctx, _instances) -> None:
    marked = session.info.get(MARK, set())
    at = datetime.now(UTC)
    for obj in list(session.dirty):
        if not isinstance(obj, Deal) or id(obj) in marked or obj.id is None:
            continue
        state = inspect(obj)
        for attr, label in TRACKED.items():
            if attr not in state.attrs:
                continue
            hist = state.attrs[attr].history
            if not hist.has_changes() or hist.added == hist.deleted:
                continue
            old = hist.deleted[0] if hist.deleted else None
            session.add(DealHistory(deal_id=obj.id, field=label, old=_text(old),
                                    new=_text(hist.added[0] if hist.added else None),
                                    who="", source="system", at=at))


@event.listens_for(Session, "after_flush")
def _record_new(session, _ctx) -> None:
    marked = session.info.pop(MARK, set())
    rows = [{"deal_id": o.id, "field": "stage", "old": None, "new": o.stage, "who": "",
             "source": "system", "at": o.created_at or datetime.now(UTC)}
            for o in session.new if isinstance(o, Deal) and id(o) not in marked]
    if rows:
        session.connection().execute(insert(DealHistory.__table__), rows)
