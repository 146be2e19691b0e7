"""Whose data a signed-in user may see: one rule for every page and the exports.

- rep: their own (customers they own, their deals, visits, tasks, requests)
- manager: everyone in the teams they manage (``teams.manager_id``) and their own team
- vp, admin: everyone; finance: everyone (collections are company-wide)
"""

from __future__ import annotations

from sqlmodel import or_, select

from storage.models import Team, User

ALL = None  # "no restriction"


async def visible_user_ids(db, user: User) -> set[int] | None:
    """The user ids whose records ``user`` may see, or ``None`` for everyone."""
    if user.role in ("vp", "admin", "finance"):
        return ALL
    if user.role == "manager":
        teams = (await db.exec(select(Team.id).where(
            or_(Team.manager_id == user.id, Team.id == user.team_id)))).all()
        ids = set((await db.exec(select(User.id).where(
            or_(User.team_id.in_(list(teams)), User.manager_id == user.id)))).all())
        return ids | {user.id}
    return {user.id}


async def visible_team_ids(db, user: User) -> set[int] | None:
    if user.role in ("vp", "admin", "finance"):
        return ALL
    if user.role == "manager":
        return set((await db.exec(select(Team.id).where(
            or_(Team.manager_id == user.id, Team.id == user.team_id)))).all())
    return {user.team_id} if user.team_id else set()


def may_see(scope: set[int] | None, owner_id: int | None) -> bool:
    return scope is ALL or (owner_id is not None and owner_id in scope)
