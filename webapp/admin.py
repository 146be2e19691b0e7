"""Admin console: the overview (rule versions in force, links) and the audit log.

The rule editors live in ``webapp.admin_rules``, users/teams/chats in ``webapp.admin_org``;
every page is admin-only (``@require("admin")``: anyone else gets the 403 page).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import func
from sqlmodel import col, select

from storage.models import AuditLog, Chat, Team, User
from webapp import rules_forms as rf
from webapp import rules_store as store
from webapp.auth import require
from webapp.core import web_ctx
from webapp.render import render

routes = web.RouteTableDef()
PAGE = 50


@routes.get("/app/admin")
@require("admin")
async def overview(request: web.Request) -> web.Response:
    ctx = web_ctx(request)
    async with ctx.session() as db:
        names = {u.id: u.name for u in (await db.exec(select(User))).all()}
        rules = []
        for key in rf.KEYS:
            row = await store.latest(db, key)
            rules.append({"key": key, "title": rf.TITLES[key],
                          "version": row.version if row else 0,
                          "who": names.get(row.created_by, "—") if row else "—",
                          "at": row.created_at if row else None})
        counts = {"users": (await db.exec(select(func.count()).select_from(User))).one(),
                  "teams": (await db.exec(select(func.count()).select_from(Team))).one(),
                  "chats": (await db.exec(select(func.count()).select_from(Chat))).one()}
        recent = list((await db.exec(select(AuditLog).order_by(col(AuditLog.id).desc())
                                     .limit(5))).all())
    return render(request, "admin.html", rules=rules, counts=counts, recent=recent,
                  names=names)


@routes.get("/app/admin/audit")
@require("admin")
async def audit(request: web.Request) -> web.Response:
    """Newest first; filter by action (prefix), actor (user id or exact name), entity."""
    q = request.query
    action, actor, entity = (q.get("action", "").strip(), q.get("actor", "").strip(),
                             q.get("entity", "").strip())
    page = int(q["page"]) if q.get("page", "").isdigit() and int(q["page"]) > 0 else 1
    ctx = web_ctx(request)
    async with ctx.session() as db:
        users = list((await db.exec(select(User).order_by(User.id))).all())
        names = {u.id: u.name for u in users}
        stmt = select(AuditLog)
        if action:
            stmt = stmt.where(col(AuditLog.action).startswith(action))
        if entity:
            stmt = stmt.where(AuditLog.entity == entity)
        if actor:
            ids = [u.id for u in users if str(u.id) == actor or u.name == actor]
            stmt = stmt.where(col(AuditLog.actor_id).in_(ids or [-1]))
        rows = list((await db.exec(stmt.order_by(col(AuditLog.id).desc())
                                   .offset((page - 1) * PAGE).limit(PAGE + 1))).all())
        actions = list((await db.exec(select(AuditLog.action).distinct()
                                      .order_by(AuditLog.action))).all())
    more = len(rows) > PAGE
    entries = [{"row": r, "who": names.get(r.actor_id, r.actor_ref or "系统 system"),
                **_detail(r.detail)} for r in rows[:PAGE]]
    keep = {k: v for k, v in (("action", action), ("actor", actor), ("entity", entity)) if v}
    return render(request, "admin_audit.html", entries=entries, actions=actions, users=users,
                  action=action, actor=actor, entity=entity, page=page, more=more,
                  query=urlencode(keep))


def _detail(detail: dict) -> dict:
    """A rule diff or field changes as lines; anything else as compact JSON."""
    detail = dict(detail or {})
    changes = detail.pop("changes", None)
    if isinstance(changes, dict):  # user/team edits: field → [old, new]
        changes = [f"{k}: {v[0] if isinstance(v, list) and v else v} → "
                   f"{v[1] if isinstance(v, list) and len(v) > 1 else ''}"
                   for k, v in changes.items()]
    lines = [str(x) for x in changes][:20] if isinstance(changes, list) else []
    rest = json.dumps(detail, ensure_ascii=False, default=str)[:400] if detail else ""
    return {"changes": lines, "rest": rest}
