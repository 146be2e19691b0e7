"""Who is asking: the session middleware, CSRF on every unsafe request, ``require(roles)``, and
the sign-in routes (the platforms' H5 sign-in, and the demo's "sign in as…" picker).

Platform sign-in: the workbench opens ``/app/auth/{platform}?code=…`` (WeCom OAuth2 ``code``,
DingTalk H5 免登 ``authCode``, Feishu H5 ``code``); the platform adapter turns the code into the
platform's user id (``adapter.web_user_id(code)``), which maps through ``identities`` to our
user. Then a signed, HttpOnly, SameSite=Lax cookie; the CSRF token is bound to it.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta

from aiohttp import web
from sqlmodel import delete, select, update

from storage.models import AuditLog, Identity, Team, User, now
from storage.session_models import WebSession
from webapp import session as ws
from webapp.core import SESSION_KEY, USER_KEY, current_user, web_ctx
from webapp.render import error_page, render

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

PRELOGIN = "fb_prelogin"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
# paths that take a POST before any session exists (they check their own token)
NO_SESSION_POSTS = ("/app/login",)
# the routes that take files (everything else is capped at web_max_form_bytes)
UPLOAD_PATHS = frozenset({"/app/visits/photo", "/app/visits/voice", "/app/data/import"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _wants_html(request: web.Request) -> bool:
    return request.method == "GET" and "json" not in request.headers.get("Accept", "")


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = web_ctx(request)
    # per route: the upload routes take a photo, a recording or a CSV; every other request is
    # a form or JSON (the bot's own 64 KB cap is for callbacks)
    limit = (ctx.settings.web_max_upload_bytes if request.path in UPLOAD_PATHS
             else ctx.settings.web_max_form_bytes)
    request = request.clone(client_max_size=limit)
    max_age = ctx.settings.web_session_hours * 3600
    sess = ws.read(ctx.secret, request.cookies.get(ws.COOKIE), max_age)
    if sess is not None:
        async with ctx.session() as db:
            user = await db.get(User, sess.user_id)
            row = await db.get(WebSession, sess.nonce)
        live = (row is not None and row.user_id == sess.user_id and row.revoked_at is None
                and row.expires_at > now())
        if user is not None and user.active and live:
            request[SESSION_KEY] = sess
            request[USER_KEY] = user
    if request.method in UNSAFE and request.path not in NO_SESSION_POSTS:
        sess = request.get(SESSION_KEY)
        if sess is None:  # before any byte of the body is read
            return web.json_response({"error": "not signed in"}, status=401)
        token = request.headers.get(ws.CSRF_HEADER)
        if token is None and request.content_type in ("application/x-www-form-urlencoded",
                                                      "multipart/form-data"):
            # malformed bodies (no boundary, over-long lines) are friendly_errors' 400
            token = (await request.post()).get(ws.CSRF_FIELD)
        if not ws.csrf_ok(ctx.secret, sess.nonce, token if isinstance(token, str) else None):
            log.warning("CSRF check failed on %s %s", request.method, request.path)
            return error_page(request, 403, "表单已过期，请刷新页面后重试 / The form expired or "
                                            "did not come from this site: reload and retry.")
    resp = await handler(request)
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data: blob:; "
                            "media-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
                            "frame-ancestors 'self'; form-action 'self'")
    if request.get(USER_KEY) is not None:
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def require(*roles: str) -> Callable[[Handler], Handler]:
    """Signed-in users only; with ``roles``, only those roles (others get 403)."""

    def wrap(fn: Handler) -> Handler:
        @functools.wraps(fn)
        async def inner(request: web.Request) -> web.StreamResponse:
            user = current_user(request)
            if user is None:
                if _wants_html(request):
                    raise web.HTTPFound(f"/app/login?next={request.path_qs}")
                return web.json_response({"error": "not signed in"}, status=401)
            if roles and user.role not in roles:
                return error_page(request, 403, "你没有权限打开这个页面 / You are not allowed "
                                                "to open this page.")
            return await fn(request)

        return inner

    return wrap


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/app/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/app/"


async def start_session(request: web.Request, resp: web.StreamResponse, user: User,
                        via: str) -> None:
    """The signed cookie, and the server-side row that makes it good until revoked."""
    ctx = web_ctx(request)
    hours = ctx.settings.web_session_hours
    cookie = ws.issue(ctx.secret, user.id, via)
    sess = ws.read(ctx.secret, cookie, hours * 3600)
    assert sess is not None
    async with ctx.session() as db:
        at = now()
        await db.exec(delete(WebSession).where(WebSession.user_id == user.id,  # keep it small
                                               WebSession.expires_at < at))
        db.add(WebSession(nonce=sess.nonce, user_id=user.id, via=via, created_at=at,
                          expires_at=at + timedelta(hours=hours)))
        await db.commit()
    resp.set_cookie(ws.COOKIE, cookie, httponly=True, samesite="Lax",
                    secure=ctx.settings.web_cookie_secure, path="/", max_age=hours * 3600)


async def end_sessions(db, user_id: int, reason: str, only: str | None = None) -> int:
    """Revoke a user's live sessions (all, or the one ``only`` names); returns how many."""
    q = update(WebSession).where(WebSession.user_id == user_id,
                                 WebSession.revoked_at.is_(None))
    if only is not None:
        q = q.where(WebSession.nonce == only)
    res = await db.exec(q.values(revoked_at=now()))
    log.info("ended %s web session(s) of user %s: %s", res.rowcount, user_id, reason)
    return res.rowcount


async def _audit_signin(request: web.Request, user: User, via: str) -> None:
    async with web_ctx(request).session() as db:
        db.add(AuditLog(actor_id=user.id, platform="" if via == "demo" else via,
                        action="web.signin", entity="user", entity_id=str(user.id),
                        detail={"via": via}))
        await db.commit()


@routes.get("/app/login")
async def login_page(request: web.Request) -> web.StreamResponse:
    ctx = web_ctx(request)
    people: list[tuple[User, str]] = []
    nonce = request.cookies.get(PRELOGIN) or secrets.token_urlsafe(12)
    if ctx.settings.web_demo_login:
        async with ctx.session() as db:
            teams = {t.id: t.name for t in (await db.exec(select(Team))).all()}
            users = (await db.exec(select(User).where(User.active == True)  # noqa: E712
                                   .order_by(User.role, User.id))).all()
        people = [(u, teams.get(u.team_id, "")) for u in users]
    resp = render(request, "login.html", demo=ctx.settings.web_demo_login, people=people,
                  next=_safe_next(request.query.get("next")),
                  login_csrf=ws.csrf_token(ctx.secret, "login:" + nonce),
                  platforms=sorted(ctx.adapters))
    resp.set_cookie(PRELOGIN, nonce, httponly=True, samesite="Strict", path="/app/login",
                    secure=ctx.settings.web_cookie_secure)
    return resp


@routes.post("/app/login")
async def demo_login(request: web.Request) -> web.StreamResponse:
    """The demo's picker: only when ``web_demo_login`` is on (never in production)."""
    ctx = web_ctx(request)
    if not ctx.settings.web_demo_login:
        raise web.HTTPNotFound()
    form = await request.post()
    nonce = request.cookies.get(PRELOGIN, "")
    if not nonce or not ws.csrf_ok(ctx.secret, "login:" + nonce, str(form.get(ws.CSRF_FIELD))):
        return error_page(request, 403, "登录表单已过期，请重试 / The sign-in form expired.")
    try:
        uid = int(str(form.get("user_id", "")))
    except ValueError:
        return error_page(request, 400, "请选择一个人 / Pick a person.")
    async with ctx.session() as db:
        user = await db.get(User, uid)
    if user is None or not user.active:
        return error_page(request, 400, "没有这个用户 / No such user.")
    await _audit_signin(request, user, "demo")
    resp = web.HTTPFound(_safe_next(str(form.get("next", ""))))
    await start_session(request, resp, user, "demo")
    raise resp


@routes.get("/app/auth/{platform}")
async def platform_signin(request: web.Request) -> web.StreamResponse:
    """The workbench's entry: WeCom ``?code=``, DingTalk ``?authCode=`` (or ``code``), Feishu
    ``?code=``. The adapter asks the platform who that is."""
    ctx = web_ctx(request)
    platform = request.match_info["platform"]
    adapter = ctx.adapters.get(platform)
    code = request.query.get("code") or request.query.get("authCode") or ""
    if adapter is None or not hasattr(adapter, "web_user_id"):
        return error_page(request, 404, f"{platform} 未启用 / {platform} is not set up here.")
    if "code" not in request.query and "authCode" not in request.query:
        # the workbench opened the bare URL: begin the platform's own sign-in flow
        return _begin_signin(request, platform, adapter)
    if not code or len(code) > 512:
        return error_page(request, 400, "缺少登录码，请从工作台重新打开 / Missing sign-in code: "
                                        "open the app again from the workbench.")
    try:
        external = await adapter.web_user_id(code)
    except Exception as exc:  # noqa: BLE001 - any platform refusal is a failed sign-in
        log.warning("%s sign-in refused: %s", platform, exc.__class__.__name__)
        return error_page(request, 401, "登录失败，请从工作台重新打开 / Sign-in failed: open the "
                                        "app again from the workbench.")
    async with ctx.session() as db:
        q = select(User).join(Identity, Identity.user_id == User.id).where(
            Identity.platform == platform, Identity.app_id == adapter.app_id,
            Identity.external_id == external)
        user = (await db.exec(q)).first()
    if user is None or not user.active:
        return error_page(request, 403, "你的账号尚未开通，请联系管理员 / Your account is not "
                                        "set up yet: ask an admin.")
    await _audit_signin(request, user, platform)
    resp = web.HTTPFound(_safe_next(request.query.get("next") or request.query.get("state")))
    await start_session(request, resp, user, platform)
    raise resp


def public_url(request: web.Request, path: str) -> str:
    """Absolute URL of ``path`` as the platform must redirect back to it (behind a proxy,
    set ``FIELDBOT_WEB_PUBLIC_URL``)."""
    settings = web_ctx(request).settings
    base = settings.web_public_url.rstrip("/")
    if not base:
        if not settings.web_demo_login:  # never from the Host header outside the demo
            raise PublicURLMissing()
        base = f"{request.scheme}://{request.host}"
    return base + path


class PublicURLMissing(RuntimeError):
    """Sign-in needs ``FIELDBOT_WEB_PUBLIC_URL``: a redirect_uri is never built from the
    request's Host header (``Host: evil.example`` would send the code there)."""


def _begin_signin(request: web.Request, platform: str, adapter) -> web.StreamResponse:
    """The platform's own sign-in flow, as its adapter describes it: a redirect to its OAuth
    page (WeCom, Feishu), or a page whose script asks the container for a code (DingTalk)."""
    nxt = _safe_next(request.query.get("next"))
    try:
        back = public_url(request, f"/app/auth/{platform}")
    except PublicURLMissing:
        log.error("sign-in refused: FIELDBOT_WEB_PUBLIC_URL is not set")
        return error_page(request, 503, "登录尚未配置（管理员需设置 FIELDBOT_WEB_PUBLIC_URL）/ "
                                        "Sign-in is not configured yet: the admin must set "
                                        "FIELDBOT_WEB_PUBLIC_URL.")
    how = adapter.web_signin(back, nxt)
    if "redirect" in how:
        raise web.HTTPFound(how["redirect"])
    return render(request, how["page"], next=nxt, **how.get("values", {}))


@routes.post("/app/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    sess, user = request.get(SESSION_KEY), current_user(request)
    if sess is not None and user is not None:  # the session ends here, not just the cookie
        async with web_ctx(request).session() as db:
            await end_sessions(db, user.id, "logout", only=sess.nonce)
            db.add(AuditLog(actor_id=user.id, action="web.signout", entity="user",
                            entity_id=str(user.id), detail={}))
            await db.commit()
    resp = web.HTTPFound("/app/login")
    resp.del_cookie(ws.COOKIE, path="/")
    raise resp


@routes.get("/app/")
@require()
async def home(request: web.Request) -> web.StreamResponse:
    return render(request, "home.html")
