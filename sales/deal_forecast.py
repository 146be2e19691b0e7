"""The rep's own call per deal (issue 17 §4): who may set a deal's forecast category and its
expected close date, and the one function every front-end (chat, mini-app) calls to do it.

- **Who may**: the deal's owner, a manager above the owner (their own ``manager_id``, else
  their team's manager, up the chain — the rule the alert buttons use), or an admin; nobody
  inactive. A closed deal (won / lost) is not forecast any more: refused as ``closed``.
- **What changes**: the category through ``sales.forecast.set_category``, the expected close
  date through ``sales.stage_history.change_deal`` (so it lands in ``deal_history`` once).
  The caller audits (with the returned old → new) and commits.
- **Finding a deal by what a rep typed**: ``open_deals_for`` narrows a text to open deals of
  the customers it names, or whose title it contains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select

from sales.forecast import OPEN, set_category
from sales.funnel import _rows
from sales.stage_history import change_deal
from storage.models import Customer, Deal, Team, User

MANAGER_ROLES = ("manager", "vp", "admin")
MAX_CHAIN = 20  # a manager chain longer than this is a data loop, not an org chart


async def manager_of(session, user_id: int | None) -> int | None:
    """The person's manager: their own ``manager_id``, else their team's manager."""
    u = await session.get(User, user_id) if user_id is not None else None
    if u is None:
        return None
    if u.manager_id and u.manager_id != u.id:
        return u.manager_id
    team = await session.get(Team, u.team_id) if u.team_id is not None else None
    if team is not None and team.manager_id and team.manager_id != u.id:
        return team.manager_id
    return None


async def manages(session, manager_id: int, user_id: int | None) -> bool:
    """``manager_id`` is above ``user_id`` (directly, through a team, or up the chain)."""
    seen: set[int] = set()
    cur = user_id
    while cur is not None and cur not in seen and len(seen) < MAX_CHAIN:
        seen.add(cur)
        boss = await manager_of(session, cur)
        if boss == manager_id:
            return True
        cur = boss
    return False


async def may_change(session, actor: User | None, owner_id: int | None) -> bool:
    """The owner, a manager above the owner, or an admin (active users only)."""
    if actor is None or not actor.active:
        return False
    if actor.role == "admin" or (owner_id is not None and actor.id == owner_id):
        return True
    return actor.role in MANAGER_ROLES and await manages(session, actor.id, owner_id)


@dataclass
class ForecastUpdate:
    """What ``update_forecast`` did. ``status``: changed | unchanged | not_found | refused |
    closed. ``changes``: {"forecast_category" | "expected_close": [old, new]} as changed."""

    status: str
    deal: Deal | None = None
    changes: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("changed", "unchanged")

    def audit_detail(self) -> dict[str, Any]:
        """old / new per changed field, JSON-ready (dates as ISO text)."""
        def txt(v: Any) -> Any:
            return v.isoformat() if isinstance(v, date) else v
        return {"old": {k: txt(o) for k, (o, _n) in self.changes.items()},
                "new": {k: txt(n) for k, (_o, n) in self.changes.items()}}


async def update_forecast(session, deal_id: int | Deal, actor: User | None, *,
                          category: str | None = None, expected_close: date | None = None,
                          source: str) -> ForecastUpdate:
    """Set the forecast category and/or the expected close date of an open deal, if
    ``actor`` may. ``None`` leaves a field as it is. Raises ``ValueError`` for an unknown
    category. The caller audits and commits (nothing is flushed on a refusal)."""
    deal = deal_id if isinstance(deal_id, Deal) else (
        await session.get(Deal, deal_id) if deal_id is not None else None)
    if deal is None:
        return ForecastUpdate("not_found")
    if not await may_change(session, actor, deal.owner_id):
        return ForecastUpdate("refused", deal)
    if deal.stage not in OPEN:
        return ForecastUpdate("closed", deal)
    changes: dict[str, list[Any]] = {}
    if category is not None:
        changed = await set_category(session, deal, category)
        if changed is not None:
            changes["forecast_category"] = list(changed)
    if expected_close is not None and expected_close != deal.expected_close:
        done = await change_deal(session, deal, who=actor.id, source=source,
                                 expected_close=expected_close)
        if "expected_close" in done:
            changes["expected_close"] = done["expected_close"]
    return ForecastUpdate("changed" if changes else "unchanged", deal, changes)


def _norm(text: str) -> str:
    return "".join(ch for ch in (text or "").lower() if ch.isalnum())


async def open_deals_for(session, text: str, customer_ids: list[int],
                         owner_ids: list[int] | None = None) -> list[tuple[Deal, str]]:
    """Open deals (with their customer's name) that ``text`` names: of ``owner_ids`` (None:
    anyone's, then only by customer), those whose title ``text`` contains (normalised), else
    those of ``customer_ids``. Ordered by customer, then the latest activity first."""
    q = (select(Deal, Customer.name).join(Customer, Customer.id == Deal.customer_id)
         .where(Deal.stage.in_(OPEN)))
    if owner_ids is None:
        q = q.where(Deal.customer_id.in_(customer_ids or [-1]))
    else:
        q = q.where(Deal.owner_id.in_(owner_ids or [-1]))
    rows = list(await _rows(session, q.order_by(Deal.customer_id, Deal.last_activity_at.desc(),
                                                Deal.id)))
    t = _norm(text)
    titled = [(d, n) for d, n in rows if len(_norm(d.title)) >= 2 and _norm(d.title) in t]
    if titled:
        return titled
    return [(d, n) for d, n in rows if d.customer_id in set(customer_ids)]
