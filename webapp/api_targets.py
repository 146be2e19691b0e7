"""Targets in the REST API (issue 17): ``GET /api/v1/targets`` reads a period's targets per
person and team (a team's with its members' sum and the gap), ``PUT /api/v1/targets`` sets
some. Thin: the rules live in ``sales.targets``; auth, errors and audit as in ``webapp.api``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlmodel import select

from sales.attainment import attainment
from sales.forecast import company_forecast
from sales.periods import Period, start_of
from sales.targets import Actor, members, set_target, team_target, user_targets
from storage.models import Team, User
from storage.rules import current_alert_rules
from webapp.api import API_CTX, ApiError, _body, _field, _out, endpoint
from webapp.api_models import Amount, Name, Strict

Kind = Literal["month", "quarter", "year"]
Metric = Literal["won", "collected", "visits"]
API = Actor(None, "api", "api")


class TargetCell(Strict):
    scope: Literal["user", "team"]
    name: Name = Field(description="the user's or team's exact name")
    value: Amount


class TargetsIn(Strict):
    """PUT /api/v1/targets: set targets for one period and metric (a new version each)."""

    kind: Kind
    start: date = Field(description="any day of the period; the period's first day is used")
    metric: Metric
    targets: Annotated[list[TargetCell], Field(min_length=1, max_length=500)]


class UserTargetOut(BaseModel):
    user_id: int
    user: str
    team_id: int | None
    value: float | None


class TeamTargetOut(BaseModel):
    team_id: int
    team: str
    explicit: float | None
    members: float | None
    value: float | None
    gap: float | None


class TargetsOut(BaseModel):
    kind: str
    start: date
    end: date
    metric: str
    changed: int = 0
    users: list[UserTargetOut]
    teams: list[TeamTargetOut]


class FiguresOut(BaseModel):
    user_id: int | None
    user: str | None
    won: float
    won_target: float | None
    attainment: float | None
    collected: float
    collect_target: float | None
    collect_attainment: float | None
    due: float
    collection_rate: float | None


class AttainmentOut(BaseModel):
    kind: str
    start: date
    end: date
    today: date
    elapsed: float
    label: str
    heads: int
    per_head: float | None
    total: FiguresOut
    people: list[FiguresOut]


class ForecastRowOut(BaseModel):
    id: int | None
    name: str | None
    won: float
    weighted: float
    commit: float
    best_case: float
    pipeline: float
    basis: str


class ProbabilitiesOut(BaseModel):
    team_id: int | None
    basis: str
    closed: int
    by_stage: dict[str, float]
    label: str


class ForecastOut(BaseModel):
    kind: str
    start: date
    end: date
    today: date
    total: ForecastRowOut
    teams: list[ForecastRowOut]
    people: list[ForecastRowOut]
    probabilities: list[ProbabilitiesOut]


MODELS: tuple[type[BaseModel], ...] = (TargetCell, TargetsIn, UserTargetOut, TeamTargetOut,
                                        TargetsOut, FiguresOut, AttainmentOut, ForecastRowOut,
                                        ProbabilitiesOut, ForecastOut)
_KIND: TypeAdapter = TypeAdapter(Kind)
_METRIC: TypeAdapter = TypeAdapter(Metric)
MIN_YEAR, MAX_YEAR = 1970, 2200


def _query(request: web.Request, name: str, adapter: TypeAdapter | None, default=None):
    raw = request.query.get(name)
    if raw is None and default is not None:
        return default
    try:
        value = adapter.validate_python(raw) if adapter else date.fromisoformat(raw or "")
    except (ValidationError, ValueError):
        raise _field(name, "missing or invalid") from None
    if adapter is None and not MIN_YEAR <= value.year <= MAX_YEAR:
        raise _field(name, f"year outside {MIN_YEAR}–{MAX_YEAR}")
    return value


async def _listing(db, period: Period, metric: str, changed: int = 0) -> TargetsOut:
    teams = (await db.exec(select(Team).order_by(Team.id))).all()
    people = (await db.exec(select(User).where(User.active).order_by(User.id))).all()
    ids = sorted({u for t in teams for u in await members(db, t.id)} |
                 {u.id for u in people if u.role in ("rep", "manager")})
    values = await user_targets(db, ids, period, metric)
    by_id = {u.id: u for u in people}
    out_teams = []
    for t in teams:
        tt = await team_target(db, t.id, period, metric)
        out_teams.append(TeamTargetOut(team_id=t.id, team=t.name, explicit=tt.explicit,
                                       members=tt.members, value=tt.value, gap=tt.gap))
    return TargetsOut(
        kind=period.kind, start=period.start, end=period.end, metric=metric, changed=changed,
        users=[UserTargetOut(user_id=i, user=by_id[i].name, team_id=by_id[i].team_id,
                             value=values.get(i)) for i in ids if i in by_id],
        teams=out_teams)


@endpoint
async def get_targets(request: web.Request) -> web.StreamResponse:
    kind = _query(request, "kind", _KIND, "month")
    metric = _query(request, "metric", _METRIC, "won")
    day = _query(request, "start", None)
    period = Period(kind, start_of(kind, day))
    async with request.app[API_CTX].session() as db:
        return _out(await _listing(db, period, metric))


async def _resolve(db, cell: TargetCell, i: int) -> int:
    model = User if cell.scope == "user" else Team
    q = select(model.id).where(model.name == cell.name)
    if model is User:
        q = q.where(User.active)
    found = (await db.exec(q.limit(2))).all()
    if len(found) != 1:
        raise ApiError(422, "validation failed", [{
            "field": f"targets.{i}.name",
            "message": f"unknown {cell.scope}" if not found else f"more than one {cell.scope} "
                                                                "has this name"}])
    return found[0]


@endpoint
async def put_targets(request: web.Request) -> web.StreamResponse:
    body: TargetsIn = await _body(request, TargetsIn)
    if not MIN_YEAR <= body.start.year <= MAX_YEAR:
        raise _field("start", f"year outside {MIN_YEAR}–{MAX_YEAR}")
    period = Period(body.kind, start_of(body.kind, body.start))
    async with request.app[API_CTX].session() as db:
        ids = [await _resolve(db, c, i) for i, c in enumerate(body.targets)]
        changed = 0
        for cell, sid in zip(body.targets, ids, strict=True):
            changed += await set_target(db, scope=cell.scope, scope_id=sid, period=period,
                                        metric=body.metric, value=cell.value,
                                        actor=API) is not None
        await db.commit()
        return _out(await _listing(db, period, body.metric, changed))


def _figures(f, names: dict[int, str]) -> FiguresOut:
    return FiguresOut(user_id=f.user_id, user=names.get(f.user_id), won=f.won,
                      won_target=f.won_target, attainment=f.attainment, collected=f.collected,
                      collect_target=f.collect_target, collect_attainment=f.collect_attainment,
                      due=f.due, collection_rate=f.collection_rate)


@endpoint
async def get_attainment(request: web.Request) -> web.StreamResponse:
    """目标达成率, 回款达成率, 人均单产 for a period: everyone's, or one team's (its
    effective targets) with ``team=<id>``; ``today`` (default: the company's today) sets the
    elapsed share."""
    kind = _query(request, "kind", _KIND, "month")
    ctx = request.app[API_CTX]
    async with ctx.session() as db:
        tz = (await current_alert_rules(db, ctx.settings.rules)).tz
        today = (_query(request, "today", None) if "today" in request.query
                 else datetime.now(UTC).astimezone(tz).date())
        day = _query(request, "start", None) if "start" in request.query else today
        period = Period(kind, start_of(kind, day))
        raw_team = request.query.get("team")
        won_t = collect_t = None
        if raw_team is not None:
            if not raw_team.isdigit() or len(raw_team) > 12 or \
                    await db.get(Team, int(raw_team)) is None:
                raise _field("team", "unknown team")
            ids = await members(db, int(raw_team))
            won_t = (await team_target(db, int(raw_team), period, "won")).value
            collect_t = (await team_target(db, int(raw_team), period, "collected")).value
        else:
            ids = list((await db.exec(select(User.id).where(
                User.active, User.role.in_(("rep", "manager"))))).all())
        names = dict((await db.exec(select(User.id, User.name).where(
            User.id.in_(ids or [-1])))).all())
        att = await attainment(db, ids, period, today, tz, won_target=won_t,
                               collect_target=collect_t)
    return _out(AttainmentOut(
        kind=kind, start=period.start, end=period.end, today=today, elapsed=att.elapsed,
        label=att.label, heads=att.heads, per_head=att.per_head,
        total=_figures(att.total, names), people=[_figures(f, names) for f in att.people]))


def _fc_row(i: int | None, name: str | None, f) -> ForecastRowOut:
    return ForecastRowOut(id=i, name=name, won=f.won, weighted=f.weighted, commit=f.commit,
                          best_case=f.best_case, pipeline=f.pipeline, basis=f.basis)


@endpoint
async def get_forecast(request: web.Request) -> web.StreamResponse:
    """The forecast of the current month or quarter (``period``), everyone's (``sales.forecast
    .company_forecast``), per team and rep, with each team's stage probabilities."""
    kind = _query(request, "period", TypeAdapter(Literal["month", "quarter"]), "month")
    ctx = request.app[API_CTX]
    async with ctx.session() as db:
        tz = (await current_alert_rules(db, ctx.settings.rules)).tz
        today = datetime.now(UTC).astimezone(tz).date()
        period = Period.of(kind, today)
        ids = list((await db.exec(select(User.id).where(
            User.active, User.role.in_(("rep", "manager"))))).all())
        cf = await company_forecast(db, period, today, tz, owners=ids)
        names = dict((await db.exec(select(User.id, User.name).where(
            User.id.in_(ids or [-1])))).all())
        teams = dict((await db.exec(select(Team.id, Team.name))).all())
    return _out(ForecastOut(
        kind=kind, start=period.start, end=period.end, today=today,
        total=_fc_row(None, None, cf.total),
        teams=[_fc_row(t, teams.get(t), f) for t, f in sorted(cf.teams.items())],
        people=[_fc_row(u, names.get(u), f) for u, f in sorted(cf.people.items())],
        probabilities=[ProbabilitiesOut(team_id=t, basis=p.basis, closed=p.closed,
                                        by_stage=p.by_stage, label=p.label)
                       for t, p in sorted(cf.probabilities.items(),
                                          key=lambda tp: (tp[0] is None, tp[0] or 0))]))


def paths(base: str, ref, json_response, errors: dict, body_errors: dict) -> dict:
    """The OpenAPI paths of these endpoints (``webapp.openapi.document`` merges them)."""
    q = [{"name": "kind", "in": "query", "required": False,
          "schema": {"type": "string", "enum": ["month", "quarter", "year"],
                     "default": "month"}},
         {"name": "start", "in": "query", "required": True,
          "description": "any day of the period (YYYY-MM-DD)",
          "schema": {"type": "string", "format": "date"}},
         {"name": "metric", "in": "query", "required": False,
          "schema": {"type": "string", "enum": ["won", "collected", "visits"],
                     "default": "won"}}]
    return {f"{base}/targets": {
        "get": {"operationId": "get_targets", "summary": "Targets of a period, per person and "
                "team (a team's with its members' sum and the gap)", "parameters": q,
                "responses": {"200": json_response("TargetsOut", "the targets"),
                              "422": json_response("Error", "a bad query parameter"),
                              **errors}},
        "put": {"operationId": "set_targets", "summary": "Set targets (each change a new "
                "version, audited)",
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": ref("TargetsIn")}}},
                "responses": {"200": json_response("TargetsOut", "set; changed counts the "
                                                   "new versions"),
                              **errors, **body_errors}}},
        f"{base}/attainment": {"get": {
            "operationId": "get_attainment", "summary": "Attainment, collections vs target and "
            "won per head for a period (everyone, or one team)",
            "parameters": [q[0], dict(q[1], required=False, description="any day of the "
                                      "period (default: today)"),
                           {"name": "today", "in": "query", "required": False,
                            "description": "the day the elapsed share is measured at",
                            "schema": {"type": "string", "format": "date"}},
                           {"name": "team", "in": "query", "required": False,
                            "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"}}],
            "responses": {"200": json_response("AttainmentOut", "the figures"),
                          "422": json_response("Error", "a bad query parameter"),
                          **errors}}},
        f"{base}/forecast": {"get": {
            "operationId": "get_forecast", "summary": "The forecast of the current month or "
            "quarter per team and rep (weighted, commit, best case, pipeline) with each "
            "team's stage probabilities",
            "parameters": [{"name": "period", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["month", "quarter"],
                                       "default": "month"}}],
            "responses": {"200": json_response("ForecastOut", "the forecast"),
                          "422": json_response("Error", "a bad query parameter"),
                          **errors}}}}


def mount(app: web.Application) -> None:
    app.router.add_get("/api/v1/attainment", get_attainment, allow_head=False)
    app.router.add_get("/api/v1/forecast", get_forecast, allow_head=False)
    app.router.add_get("/api/v1/targets", get_targets, allow_head=False)
    app.router.add_put("/api/v1/targets", put_targets)
