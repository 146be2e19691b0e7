"""Admin page for targets (目标): a grid of a team's people × the quarter's months for one
metric, with the team's own target, its members' sum and the gap; "split the team's quarter
evenly" and "copy last quarter" buttons. Thin: the rules are ``sales.targets``; CSRF is the
session middleware's, as on every admin form; each change is versioned and audited there.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from urllib.parse import urlencode

from aiohttp import web
from sqlmodel import select

from sales.periods import Period
from sales.target_import import import_targets
from sales.targets import (
    METRIC_NAMES,
    METRICS,
    Actor,
    copy_last_quarter,
    explicit,
    members,
    parse_period,
    set_target,
    split_quarter,
    team_target,
)
from storage.models import Team, User
from webapp import metrics as m
from webapp.auth import require
from webapp.core import current_user, web_ctx
from webapp.render import error_page, render
from webapp.tabular import TableError, read_table

routes = web.RouteTableDef()
MAX_VALUE = 1e12


class _Bad(Exception):
    pass


async def _today(request: web.Request, db) -> date:
    rules = await m.load_rules(db, web_ctx(request).settings)
    return datetime.now(UTC).astimezone(rules.tz).date()


def _choice(raw: str | None, allowed, default):
    return raw if raw in allowed else default


async def _selection(request: web.Request, db, source) -> tuple[Team, Period, str]:
    teams = list((await db.exec(select(Team).order_by(Team.id))).all())
    if not teams:
        raise _Bad("还没有团队 / no teams yet: create one under Teams")
    raw_team = str(source.get("team", ""))
    team = next((t for t in teams if str(t.id) == raw_team), teams[0])
    raw_q = str(source.get("quarter", "")).strip()
    try:
        quarter = parse_period("quarter", raw_q) if raw_q else Period.of(
            "quarter", await _today(request, db))
    except ValueError:
        raise _Bad("季度无效 / not a valid quarter (YYYY-MM-DD)") from None
    if not 1970 <= quarter.start.year <= 2200:
        raise _Bad("季度无效 / not a valid quarter")
    return team, quarter, _choice(source.get("metric"), METRICS, "won")


def _back(team: Team, quarter: Period, metric: str, done: str = "") -> str:
    q = {"team": team.id, "quarter": quarter.start.isoformat(), "metric": metric}
    if done:
        q["done"] = done
    return "/app/admin/targets?" + urlencode(q)


@routes.get("/app/admin/targets")
@require("admin")
async def targets_page(request: web.Request) -> web.Response:
    ctx = web_ctx(request)
    async with ctx.session() as db:
        try:
            team, quarter, metric = await _selection(request, db, request.query)
        except _Bad as exc:
            return error_page(request, 400, str(exc))
        teams = list((await db.exec(select(Team).order_by(Team.id))).all())
        ids = await members(db, team.id)
        people = {u.id: u for u in (await db.exec(select(User).where(User.id.in_(ids)))).all()}
        users = await explicit(db, "user", ids, metric, quarter.start, quarter.end)
        own = await explicit(db, "team", [team.id], metric, quarter.start, quarter.end)
        total = await team_target(db, team.id, quarter, metric)
    months = quarter.months()
    grid = [(people[i], [users.get((i, "month", mo)) for mo in months],
             users.get((i, "quarter", quarter.start))) for i in ids if i in people]
    return render(request, "admin_targets.html", teams=teams, team=team, quarter=quarter,
                  prev=quarter.previous(), next=Period("quarter", quarter.next_start),
                  metric=metric, metrics=[(k, METRIC_NAMES[k]) for k in METRICS],
                  months=months, grid=grid, total=total,
                  team_months=[own.get((team.id, "month", mo)) for mo in months],
                  team_quarter=own.get((team.id, "quarter", quarter.start)),
                  flash={"saved": "已保存 / Saved", "split": "已拆分 / Split evenly",
                         "copied": "已复制上季度 / Copied last quarter",
                         "imported": "已导入 / Imported"}.get(
                      request.query.get("done", ""), ""))


def _value(raw: str) -> float | None:
    text = raw.strip().replace(",", "")
    if text == "":
        return None
    try:
        v = float(text)
    except ValueError:
        raise _Bad(f"「{raw[:20]}」不是数字 / is not a number") from None
    if not 0 <= v <= MAX_VALUE:
        raise _Bad("目标须在 0 到 1e12 之间 / a target is between 0 and 1e12")
    return v


@routes.post("/app/admin/targets")
@require("admin")
async def save_targets(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    user = current_user(request)
    actor = Actor(user.id if user else None)
    ctx = web_ctx(request)
    async with ctx.session() as db:
        try:
            team, quarter, metric = await _selection(request, db, form)
            action = str(form.get("action", "save"))
            if action == "split":
                await split_quarter(db, team.id, quarter, metric, actor, over="grid")
            elif action == "copy":
                await copy_last_quarter(db, team.id, quarter, metric, actor)
            else:
                ids = set(await members(db, team.id))
                cells = []
                for mo in quarter.months():
                    cells.append(("team", team.id, Period("month", mo), f"t-{mo:%Y-%m}"))
                    cells += [("user", i, Period("month", mo), f"u{i}-{mo:%Y-%m}") for i in ids]
                cells.append(("team", team.id, quarter, "t-q"))
                cells += [("user", i, quarter, f"u{i}-q") for i in ids]
                for scope, sid, period, name in cells:
                    v = _value(str(form.get(name, "")))
                    if v is not None:
                        await set_target(db, scope=scope, scope_id=sid, period=period,
                                         metric=metric, value=v, actor=actor)
            await db.commit()
        except (_Bad, ValueError) as exc:
            return error_page(request, 400, str(exc))
    done = {"split": "split", "copy": "copied"}.get(action, "saved")
    raise web.HTTPSeeOther(_back(team, quarter, metric, done))


@routes.post("/app/admin/targets/import")
@require("admin")
async def import_targets_file(request: web.Request) -> web.StreamResponse:
    """A CSV/.xlsx of targets (``sales.target_import.COLUMNS``): all rows or none."""
    form = await request.post()
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        return error_page(request, 400, "请选择文件 / choose a file")
    data = upload.file.read()
    try:
        header, rows = read_table(data, upload.filename or "")
    except TableError as exc:
        return error_page(request, 400, str(exc))
    user = current_user(request)
    ctx = web_ctx(request)
    async with ctx.session() as db:
        try:
            result = await import_targets(db, header, rows, Actor(user.id if user else None))
        except TableError as exc:
            return error_page(request, 400, str(exc))
        if not result.ok:
            await db.rollback()
            lines = "；".join(f"第 {n} 行 row {n}: {msg}" for n, msg in result.problems[:20])
            return error_page(request, 400, "没有导入任何目标 / nothing imported — " + lines)
        await db.commit()
    raise web.HTTPSeeOther("/app/admin/targets?done=imported")
