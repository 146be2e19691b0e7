"""Admin pages for the organisation: users (role, team, manager, active), teams (name,
region, manager, the platform chat its alerts go to) and chats (a group-robot webhook).

Mistakes are refused in words before anything is written: the last active admin losing the
role, a user as their own manager, a manager chain that loops, a webhook that is not https.
Every change writes an ``audit_log`` row with the old and new values.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from sqlmodel import select

from storage.models import AuditLog, Chat, Identity, Team, User
from webapp.auth import end_sessions, require
from webapp.core import ROLE_RANK, current_user, web_ctx
from webapp.render import render

routes = web.RouteTableDef()
ROLES = tuple(ROLE_RANK)


class Refused(Exception):
    """A change the admin must correct; the message says what and why."""


def _audit(db, request: web.Request, action: str, entity: str, entity_id: Any,
           **detail: Any) -> None:
    user = current_user(request)
    db.add(AuditLog(actor_id=user.id if user else None, platform="web", action=action,
                    entity=entity, entity_id=str(entity_id), detail=detail))


def _opt_id(form, name: str) -> int | None:
    raw = str(form.get(name, "")).strip()
    if raw == "":
        return None
    if not raw.isdigit():
        raise Refused(f"{name} 必须是编号（现在「{raw}」）")
    return int(raw)


async def _all(db, model, order=None) -> list:
    return list((await db.exec(select(model).order_by(order or model.id))).all())


async def _create(db, request: web.Request, model, values: dict[str, Any], entity: str) -> None:
    """Insert a user or team from checked ``values``; the audit row holds them all."""
    row = model(**values)
    db.add(row)
    await db.flush()  # the new id, for the audit row
    _audit(db, request, f"{entity}.create", entity, row.id, **values)
    await db.commit()


async def _update(db, request: web.Request, row, values: dict[str, Any], entity: str,
                  *shown: str) -> None:
    """Apply checked ``values`` to ``row``; audit (old → new of what changed, plus the
    ``shown`` fields as they are afterwards) only when something did."""
    changes = {k: [getattr(row, k), v] for k, v in values.items() if getattr(row, k) != v}
    if not changes:
        return
    for k, v in values.items():
        setattr(row, k, v)
    db.add(row)
    _audit(db, request, f"{entity}.update", entity, row.id,
           **{f: getattr(row, f) for f in shown}, changes=changes)
    await db.commit()


def check_manager(users: dict[int, User], user_id: int | None, manager_id: int | None) -> None:
    """A user is not their own manager, and following managers up never comes back."""
    if manager_id is None:
        return
    if manager_id not in users:
        raise Refused("所选的上级不存在 / That manager does not exist")
    if user_id is not None and manager_id == user_id:
        raise Refused("不能把用户设为自己的上级 / A user cannot be their own manager")
    seen: set[int] = set()
    cur: int | None = manager_id
    while cur is not None and cur not in seen:
        if cur == user_id:
            raise Refused(f"上级关系会形成循环：{users[manager_id].name} 的上级链又回到了 "
                          f"{users[user_id].name} / That would make a manager cycle")
        seen.add(cur)
        cur = users[cur].manager_id if cur in users else None


def check_admins_left(users: dict[int, User], user: User, role: str, active: bool) -> None:
    if user.role == "admin" and user.active and (role != "admin" or not active):
        others = [u for u in users.values() if u.id != user.id and u.role == "admin"
                  and u.active]
        if not others:
            raise Refused("这是最后一位管理员，不能取消其管理员角色或停用 / This is the last "
                          "active admin: keep the role or make someone else admin first")


# -- users ----------------------------------------------------------------------------------
async def _users_page(request: web.Request, status: int = 200, flash: str = "",
                      flash_kind: str = "ok", edit: User | None = None) -> web.Response:
    async with web_ctx(request).session() as db:
        users = await _all(db, User)
        teams = await _all(db, Team)
        idents: dict[int, list[str]] = {}
        for i in await _all(db, Identity):
            idents.setdefault(i.user_id, []).append(f"{i.platform}:{i.external_id}")
    return render(request, "admin_users.html" if edit is None else "admin_user.html",
                  status=status, users=users, teams={t.id: t for t in teams},
                  names={u.id: u.name for u in users}, idents=idents, roles=ROLES, edit=edit,
                  flash=flash, flash_kind=flash_kind)


@routes.get("/app/admin/users")
@require("admin")
async def users_page(request: web.Request) -> web.Response:
    done = request.query.get("done", "")
    return await _users_page(request, flash="已保存 / Saved" if done else "")


@routes.get("/app/admin/users/{user_id:\\d+}")
@require("admin")
async def user_page(request: web.Request) -> web.Response:
    async with web_ctx(request).session() as db:
        user = await db.get(User, int(request.match_info["user_id"]))
    if user is None:
        raise web.HTTPNotFound()
    return await _users_page(request, edit=user)


def _user_values(form, users: dict[int, User], teams: dict[int, Team], user: User | None
                 ) -> dict[str, Any]:
    name = str(form.get("name", user.name if user else "")).strip()
    if not name or len(name) > 60:
        raise Refused("姓名不能为空，最多 60 个字 / A name of 1–60 characters is needed")
    role = str(form.get("role", ""))
    if role not in ROLES:
        raise Refused(f"角色必须是 {', '.join(ROLES)} 之一 / Unknown role")
    team_id = _opt_id(form, "team_id")
    if team_id is not None and team_id not in teams:
        raise Refused("所选的团队不存在 / That team does not exist")
    manager_id = _opt_id(form, "manager_id")
    check_manager(users, user.id if user else None, manager_id)
    active = user is None or form.get("active") == "on"
    if user is not None:
        check_admins_left(users, user, role, active)
    return {"name": name, "role": role, "team_id": team_id, "manager_id": manager_id,
            "active": active}


@routes.post("/app/admin/users")
@require("admin")
async def user_create(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    async with web_ctx(request).session() as db:
        users = {u.id: u for u in await _all(db, User)}
        teams = {t.id: t for t in await _all(db, Team)}
        try:
            values = _user_values(form, users, teams, None)
        except Refused as exc:
            return await _users_page(request, 400, f"未创建：{exc}", "error")
        await _create(db, request, User, values, "user")
    raise web.HTTPSeeOther("/app/admin/users?done=1")


@routes.post("/app/admin/users/{user_id:\\d+}")
@require("admin")
async def user_update(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    async with web_ctx(request).session() as db:
        users = {u.id: u for u in await _all(db, User)}
        teams = {t.id: t for t in await _all(db, Team)}
        user = users.get(int(request.match_info["user_id"]))
        if user is None:
            raise web.HTTPNotFound()
        try:
            values = _user_values(form, users, teams, user)
        except Refused as exc:
            return await _users_page(request, 400, f"未保存：{exc}", "error", edit=user)
        was = (user.role, user.active)
        await _update(db, request, user, values, "user", "name")
        if (values["role"], values["active"]) != was:  # what they may see changed: sign out
            await end_sessions(db, user.id, "role or status changed")
            await db.commit()
    raise web.HTTPSeeOther("/app/admin/users?done=1")


@routes.post("/app/admin/users/{user_id:\\d+}/sessions/end")
@require("admin")
async def user_sessions_end(request: web.Request) -> web.StreamResponse:
    """An admin signs someone out of the mini-app everywhere, at once."""
    async with web_ctx(request).session() as db:
        user = await db.get(User, int(request.match_info["user_id"]))
        if user is None:
            raise web.HTTPNotFound()
        n = await end_sessions(db, user.id, "ended by an admin")
        _audit(db, request, "user.sessions_end", "user", user.id, name=user.name, sessions=n)
        await db.commit()
    raise web.HTTPSeeOther("/app/admin/users?done=1")


# -- teams and chats ------------------------------------------------------------------------
async def _teams_page(request: web.Request, status: int = 200, flash: str = "",
                      flash_kind: str = "ok") -> web.Response:
    async with web_ctx(request).session() as db:
        teams = await _all(db, Team)
        users = await _all(db, User)
        chats = await _all(db, Chat)
    return render(request, "admin_teams.html", status=status, teams=teams, users=users,
                  names={u.id: u.name for u in users}, chats=chats,
                  chat_names={c.id: f"{c.title or c.external_id}（{c.platform}）" for c in chats},
                  flash=flash, flash_kind=flash_kind)


@routes.get("/app/admin/teams")
@require("admin")
async def teams_page(request: web.Request) -> web.Response:
    return await _teams_page(request, flash="已保存 / Saved" if request.query.get("done")
                             else "")


async def _team_values(db, form, team: Team | None) -> dict[str, Any]:
    name = str(form.get("name", "")).strip()
    if not name or len(name) > 60:
        raise Refused("团队名称不能为空，最多 60 个字 / A team name of 1–60 characters")
    clash = (await db.exec(select(Team).where(Team.name == name))).first()
    if clash is not None and (team is None or clash.id != team.id):
        raise Refused(f"已有名为「{name}」的团队 / A team with that name exists")
    region = str(form.get("region", "")).strip()[:60]
    manager_id = _opt_id(form, "manager_id")
    if manager_id is not None and await db.get(User, manager_id) is None:
        raise Refused("所选的经理不存在 / That manager does not exist")
    chat_id = _opt_id(form, "chat_id")
    if chat_id is not None and await db.get(Chat, chat_id) is None:
        raise Refused("所选的群不存在（机器人还没见过它）/ The bot has not seen that chat")
    return {"name": name, "region": region, "manager_id": manager_id, "chat_id": chat_id}


@routes.post("/app/admin/teams")
@require("admin")
async def team_create(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    async with web_ctx(request).session() as db:
        try:
            values = await _team_values(db, form, None)
        except Refused as exc:
            return await _teams_page(request, 400, f"未创建：{exc}", "error")
        await _create(db, request, Team, values, "team")
    raise web.HTTPSeeOther("/app/admin/teams?done=1")


@routes.post("/app/admin/teams/{team_id:\\d+}")
@require("admin")
async def team_update(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    async with web_ctx(request).session() as db:
        team = await db.get(Team, int(request.match_info["team_id"]))
        if team is None:
            raise web.HTTPNotFound()
        try:
            values = await _team_values(db, form, team)
        except Refused as exc:
            return await _teams_page(request, 400, f"未保存：{exc}", "error")
        await _update(db, request, team, values, "team")
    raise web.HTTPSeeOther("/app/admin/teams?done=1")


def check_webhook(url: str) -> str:
    url = url.strip()
    if url == "":
        return ""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or len(url) > 500:
        raise Refused("群机器人地址必须是 https:// 开头的完整网址 / The webhook must be an "
                      "https URL")
    return url


@routes.post("/app/admin/chats/{chat_id:\\d+}")
@require("admin")
async def chat_update(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    async with web_ctx(request).session() as db:
        chat = await db.get(Chat, int(request.match_info["chat_id"]))
        if chat is None:
            raise web.HTTPNotFound()
        try:
            url = check_webhook(str(form.get("webhook_url", "")))
        except Refused as exc:
            return await _teams_page(request, 400, f"未保存：{exc}", "error")
        if url != chat.webhook_url:
            _audit(db, request, "chat.update", "chat", chat.id,
                   changes={"webhook_url": [_mask(chat.webhook_url), _mask(url)]})
            chat.webhook_url = url
            db.add(chat)
            await db.commit()
    raise web.HTTPSeeOther("/app/admin/teams?done=1")


def _mask(url: str) -> str:
    """Webhook URLs carry their secret in the query: the audit keeps only the host."""
    return f"https://{urlsplit(url).hostname}/…" if url else ""

