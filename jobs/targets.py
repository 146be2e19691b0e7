"""Who is who for alerts: the organisation in memory, and people/chats → outbox ``Target``s.

Loaded once per run (users, teams, identities, chats are small next to deals and invoices).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel import select

from bot.event import Target
from storage.models import Chat, Identity, Team, User
from storage.prefs import all_prefs, last_used

MANAGER_ROLES = ("manager", "vp", "admin")


@dataclass
class Org:
    users: dict[int, User] = field(default_factory=dict)
    teams: dict[int, Team] = field(default_factory=dict)
    user_targets: dict[int, Target] = field(default_factory=dict)
    chat_targets: dict[int, Target] = field(default_factory=dict)

    def team_of(self, user_id: int | None) -> Team | None:
        u = self.users.get(user_id) if user_id is not None else None
        return self.teams.get(u.team_id) if u and u.team_id is not None else None

    def manager_of(self, user_id: int | None) -> int | None:
        """The person's manager: their own ``manager_id``, else their team's manager."""
        u = self.users.get(user_id) if user_id is not None else None
        if u is None:
            return None
        if u.manager_id and u.manager_id != u.id:
            return u.manager_id
        team = self.teams.get(u.team_id) if u.team_id is not None else None
        if team and team.manager_id and team.manager_id != u.id:
            return team.manager_id
        return None

    def finance_for(self, user_id: int | None) -> list[int]:
        """Finance people of the owner's team, else every finance person."""
        fin = [u for u in self.users.values() if u.role == "finance" and u.active]
        team = self.team_of(user_id)
        mine = [u.id for u in fin if team is not None and u.team_id == team.id]
        return mine or [u.id for u in fin]

    def is_manager_of(self, manager_id: int, user_id: int | None) -> bool:
        """``manager_id`` manages ``user_id`` directly, through a team, or up the chain."""
        seen: set[int] = set()
        cur = user_id
        while cur is not None and cur not in seen:
            seen.add(cur)
            boss = self.manager_of(cur)
            if boss == manager_id:
                return True
            cur = boss
        return False

    def reports_of(self, manager_id: int) -> list[int]:
        """Everyone below ``manager_id`` (direct, through managed teams, transitively)."""
        return sorted(uid for uid in self.users
                      if uid != manager_id and self.is_manager_of(manager_id, uid))

    def managers(self) -> list[int]:
        ids = {t.manager_id for t in self.teams.values() if t.manager_id}
        ids |= {u.manager_id for u in self.users.values() if u.manager_id}
        ids |= {u.id for u in self.users.values() if u.role in ("manager", "vp")}
        return sorted(i for i in ids if i in self.users and self.users[i].active)

    def dest_target(self, dest: str) -> Target | None:
        kind, _, ident = dest.partition(":")
        if kind == "user":
            return self.user_targets.get(int(ident))
        if kind == "chat":
            return self.chat_targets.get(int(ident))
        return None


async def scalars(session, stmt) -> list:
    """Model rows from a plain SQLAlchemy or a SQLModel async session (handlers get the
    latter, whose ``execute`` warns)."""
    if hasattr(session, "exec"):
        return list((await session.exec(stmt)).all())
    return list((await session.execute(stmt)).scalars().all())


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def load_org(session) -> Org:
    org = Org()
    for u in await scalars(session, select(User)):
        org.users[u.id] = u
    for t in await scalars(session, select(Team)):
        org.teams[t.id] = t
    # where alerts reach a person: the platform they chose (``提醒到 飞书``), else the one they
    # wrote to the bot from last, else their first identity
    prefs = await all_prefs(session)
    used = await last_used(session)
    mine: dict[int, list[Identity]] = {}
    for i in await scalars(session, select(Identity).order_by(Identity.id)):
        mine.setdefault(i.user_id, []).append(i)
    for uid, idents in mine.items():
        chosen = (prefs.get(uid) or {}).get("alerts_platform")
        pick = next((i for i in idents if i.platform == chosen), None)
        if pick is None:
            seen = [i for i in idents if (i.platform, i.app_id, i.external_id) in used]
            pick = max(seen, key=lambda i: _aware(used[(i.platform, i.app_id,
                                                         i.external_id)])) if seen else idents[0]
        org.user_targets[uid] = Target(platform=pick.platform, app_id=pick.app_id, kind="user",
                                       id=pick.external_id)
    for c in await scalars(session, select(Chat)):
        extra = {"webhook_url": c.webhook_url} if c.webhook_url else {}
        org.chat_targets[c.id] = Target(platform=c.platform, app_id=c.app_id, kind="chat",
                                        id=c.external_id, extra=extra)
    return org


def dests_for(org: Org, recipients: list[str], owner_id: int | None) -> list[str]:
    """Route names (owner, manager, team_chat, finance) → destination keys ``user:7``/
    ``chat:3``; unknown people are skipped (a rep without a manager, a team without a chat)."""
    out: list[str] = []
    for r in recipients:
        if r == "owner" and owner_id is not None:
            out.append(f"user:{owner_id}")
        elif r == "manager":
            m = org.manager_of(owner_id)
            if m is not None:
                out.append(f"user:{m}")
        elif r == "team_chat":
            team = org.team_of(owner_id)
            if team is not None and team.chat_id is not None:
                out.append(f"chat:{team.chat_id}")
        elif r == "finance":
            out.extend(f"user:{f}" for f in org.finance_for(owner_id))
    return list(dict.fromkeys(out))
