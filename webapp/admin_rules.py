"""Admin pages for the bot's rules: the structured form and the JSON editor, save as a new
version, the dry-run preview, the version list with diffs, and restoring an old version.

Both editors post the same way (``mode`` = ``form`` | ``json``); a refused document re-renders
the page with every mistake named and nothing written. ``base_version`` on the form makes a
save against rules someone else changed meanwhile a refusal, not a silent overwrite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import col, select

from storage.models import User
from webapp import rules_check as check
from webapp import rules_forms as rf
from webapp import rules_preview as rp
from webapp import rules_store as store
from webapp.auth import require
from webapp.core import current_user, web_ctx
from webapp.render import error_page, render

routes = web.RouteTableDef()


def _key(request: web.Request) -> str:
    key = request.match_info["key"]
    if key not in rf.KEYS:
        raise web.HTTPNotFound()
    return key


async def _requesters(db) -> list[User]:
    return list((await db.exec(select(User).where(User.active).order_by(
        col(User.role) != "rep", User.id))).all())


async def _page(request: web.Request, key: str, *, status: int = 200,
                doc: dict[str, Any] | None = None, values: dict[str, str] | None = None,
                json_text: str | None = None, errors: list | None = None,
                preview: dict | None = None, requester_id: int | None = None,
                flash: str = "", flash_kind: str = "ok") -> web.Response:
    ctx = web_ctx(request)
    async with ctx.session() as db:
        rules, version = await store.current(ctx, db, key)
        people = await _requesters(db) if key == "approvals" else []
    cur = rf.dump(rules)
    doc = doc if doc is not None else cur
    fields = rf.fields_for(key, doc)
    errors = errors or []
    bad = [p for p, _m in errors if p]
    sections = []
    for name, group in groupby(fields, lambda f: f.section):
        fs = list(group)
        near = any(f.path.startswith(p) or p.startswith(f.path) for p in bad for f in fs)
        sections.append((name, fs, near or not name.startswith(rf.FOLDED)))
    return render(
        request, "admin_rules.html", status=status, key=key, title=rf.TITLES[key],
        version=version, sections=sections,
        values=values if values is not None else rf.form_values(key, doc),
        json_text=json_text if json_text is not None else json.dumps(
            doc, ensure_ascii=False, indent=2),
        errors=errors, error_paths={p for p, _m in errors}, preview=preview,
        people=people, requester_id=requester_id or (people[0].id if people else 0),
        routes=doc.get("routes") if key == "alerts" and isinstance(doc.get("routes"), list)
        else [], flash=flash, flash_kind=flash_kind)


@dataclass
class _Submitted:
    """A posted rule set: the model (None when refused), the document, the errors, and the
    raw form values or JSON text, so the editor comes back with what the admin typed."""

    key: str
    form: Any
    model: BaseModel | None
    doc: dict[str, Any]
    errors: list
    raw: dict[str, str] | None = None
    text: str | None = None

    async def again(self, request: web.Request, status: int = 200, **values: Any
                    ) -> web.Response:
        return await _page(request, self.key, status=status, doc=self.doc, values=self.raw,
                           json_text=self.text, **values)

    async def refused(self, request: web.Request, flash: str) -> web.Response:
        return await self.again(request, 400, errors=self.errors, flash=flash,
                                flash_kind="error")


async def _submitted(request: web.Request) -> _Submitted:
    """Parse and validate what the form or JSON editor posted (schema and policy)."""
    key = _key(request)
    form = await request.post()
    ctx = web_ctx(request)
    async with ctx.session() as db:
        rules, _v = await store.current(ctx, db, key)
    mode = form.get("mode", "form")
    if mode == "json":
        text = str(form.get("json", ""))
        doc, errors = rf.parse_json(text)
        if doc is None:
            return _Submitted(key, form, None, rf.dump(rules), errors, text=text)
        model, errors = check.validate(key, doc)
        return _Submitted(key, form, model, doc, errors, text=text)
    raw = {k: str(v) for k, v in form.items()}
    doc, errors = rf.apply_form(key, rf.dump(rules), raw)
    if errors:
        return _Submitted(key, form, None, doc, errors, raw=raw)
    model, errors = check.validate(key, doc)
    return _Submitted(key, form, model, doc, errors, raw=raw)


@routes.get("/app/admin/rules/{key}")
@require("admin")
async def rules_page(request: web.Request) -> web.Response:
    key = _key(request)
    saved = request.query.get("saved", "")
    return await _page(request, key, flash=f"已保存为版本 {saved} / Saved as version {saved}"
                       if saved.isdigit() else "")


@routes.post("/app/admin/rules/{key}")
@require("admin")
async def rules_save(request: web.Request) -> web.StreamResponse:
    sub = await _submitted(request)
    if sub.model is None:
        return await sub.refused(request, "未保存：请修改下面标出的问题 / Not saved: fix the "
                                          "problems below")
    key, form = sub.key, sub.form
    ctx, user = web_ctx(request), current_user(request)
    async with ctx.session() as db:
        before, version = await store.current(ctx, db, key)
        base = str(form.get("base_version", ""))
        if base != str(version):
            return await sub.again(request, 409, flash_kind="error",
                                   flash=f"规则已被他人修改（现在是版本 {version}），"
                                         "请检查后再保存 / Someone saved meanwhile; review "
                                         "and save again")
        if rf.dump(sub.model) == rf.dump(before):
            return await _page(request, key, flash="没有变化，未创建新版本 / Nothing changed")
        try:
            new = await store.save_version(db, key, sub.model, before, user,
                                           mode=str(form.get("mode", "form")))
            await db.commit()
        except IntegrityError:
            return error_page(request, 409, "规则刚被他人保存，请刷新后再试 / Saved by someone "
                                            "else a moment ago; reload and try again.")
    raise web.HTTPSeeOther(f"/app/admin/rules/{key}?saved={new}")


@routes.post("/app/admin/rules/{key}/preview")
@require("admin")
async def rules_preview(request: web.Request) -> web.Response:
    sub = await _submitted(request)
    if sub.model is None:
        return await sub.refused(request, "无法预览：请修改下面标出的问题 / Cannot preview: fix "
                                          "the problems below")
    try:
        preview, requester_id = await _dry_run(request, sub.key, sub.model, sub.form)
    except (ArithmeticError, ValueError) as exc:  # rules the jobs could not run with
        return await sub.again(request, 400,
                               errors=[("", f"这些规则无法运行：{exc.__class__.__name__}")],
                               flash="无法预览 / Cannot preview", flash_kind="error")
    except OperationalError:  # SQLite: a job holds the write lock right now
        return await sub.again(request, 503, flash="数据库正忙（定时任务在运行），请稍后再预览 / "
                               "The database is busy; try the preview again in a moment",
                               flash_kind="error")
    return await sub.again(request, preview=preview, requester_id=requester_id,
                           flash="预览：尚未保存 / Preview only — nothing saved", flash_kind="ok")


async def _dry_run(request: web.Request, key: str, model: BaseModel, form
                   ) -> tuple[dict[str, Any], int | None]:
    """(the preview, the requester it used); alert scans run after the page's own session is
    closed, so their rolled-back transactions are the only ones open."""
    ctx = web_ctx(request)
    async with ctx.session() as db:
        current, _v = await store.current(ctx, db, key)
        if key == "approvals":
            rid = str(form.get("requester_id", ""))
            people = await _requesters(db)
            requester = next((u for u in people if str(u.id) == rid), people[0])
            return await rp.approval_preview(db, current, model,  # type: ignore[arg-type]
                                             requester), requester.id
    return await rp.alert_preview(ctx.engine, current, model,  # type: ignore[arg-type]
                                  datetime.now(UTC), ctx.secret), None


@routes.get("/app/admin/rules/{key}/versions")
@require("admin")
async def rules_versions(request: web.Request) -> web.Response:
    key = _key(request)
    ctx = web_ctx(request)
    async with ctx.session() as db:
        rows = await store.versions(db, key)
        names = {u.id: u.name for u in (await db.exec(select(User))).all()}
    base = rf.dump(store.defaults(ctx, key))
    listing = []
    for i, row in enumerate(rows):
        prev = rows[i + 1].value if i + 1 < len(rows) else base
        listing.append({"version": row.version, "who": names.get(row.created_by, "—"),
                        "at": row.created_at, "diff": rf.diff(prev, row.value),
                        "current": i == 0})
    restored = request.query.get("restored", "")
    return render(request, "admin_versions.html", key=key, title=rf.TITLES[key],
                  versions=listing, flash=f"已恢复为新版本 {restored} / Restored as version "
                  f"{restored}" if restored.isdigit() else "")


@routes.post("/app/admin/rules/{key}/restore/{version}")
@require("admin")
async def rules_restore(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    wanted = request.match_info["version"]
    if not wanted.isdigit():
        return error_page(request, 404, "没有这个版本 / No such version.")
    ctx, user = web_ctx(request), current_user(request)
    async with ctx.session() as db:
        row = next((r for r in await store.versions(db, key) if r.version == int(wanted)),
                   None)
        if row is None:
            return error_page(request, 404, "没有这个版本 / No such version.")
        model, errors = check.validate(key, dict(row.value))
        if model is None:
            return error_page(request, 400, f"版本 {wanted} 已不符合现在的规则格式，无法恢复："
                              + "；".join(m for _p, m in errors))
        before, _v = await store.current(ctx, db, key)
        if rf.dump(model) == rf.dump(before):
            raise web.HTTPSeeOther(f"/app/admin/rules/{key}/versions")
        try:
            new = await store.save_version(db, key, model, before, user,
                                           action="rules.restore",
                                           restored_from=int(wanted))
            await db.commit()
        except IntegrityError:
            return error_page(request, 409, "规则刚被他人保存，请刷新后再试 / Saved by someone "
                                            "else a moment ago; reload and try again.")
    raise web.HTTPSeeOther(f"/app/admin/rules/{key}/versions?restored={new}")
