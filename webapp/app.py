"""Mount the mini-app on the bot's application (called by ``bot.app.create_app``).

Each area is one module with its own ``routes``; this module only assembles them, serves the
static files (vendored: no CDN at run time) and installs the session/CSRF middleware.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from aiohttp import web

from bot.errors import BAD_INPUT, unexpected
from webapp.auth import UPLOAD_PATHS, session_middleware
from webapp.core import WEB, WebCtx
from webapp.render import JINJA, error_page, make_env

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"

# the page areas, in nav order; each module exports ``routes`` (web.RouteTableDef)
AREAS = ("webapp.auth", "webapp.rep", "webapp.rep_sync", "webapp.rep_visit",
         "webapp.rep_capture", "webapp.approver", "webapp.dashboard", "webapp.admin",
         "webapp.admin_rules", "webapp.admin_org", "webapp.admin_targets", "webapp.data",
         "webapp.help")


@web.middleware
async def friendly_errors(request: web.Request, handler) -> web.StreamResponse:
    """A page that breaks says so in words (and is logged); it never shows a stack trace."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status in (404, 405) and request.method == "GET":
            return error_page(request, exc.status, "页面不存在 / No such page.")
        if exc.status == 413:
            return error_page(request, 413, "文件太大 / The upload is too large (limit "
                              f"{web_ctx_limit(request) // (1024 * 1024)} MB).")
        raise
    except BAD_INPUT as exc:
        log.warning("bad request to %s: %s", request.path, exc.__class__.__name__)
        return error_page(request, 400, "请求无效 / That request was not valid.")
    except Exception as exc:  # noqa: BLE001 - the catch-all: an id, one log line, no trace out
        eid = unexpected(exc, request.path)
        return error_page(request, 500, f"出错了，请稍后重试（错误编号 {eid}）/ Something went "
                                        f"wrong; please retry (error {eid}).")


def web_ctx_limit(request: web.Request) -> int:
    settings = request.config_dict[WEB].settings
    return (settings.web_max_upload_bytes if request.path in UPLOAD_PATHS
            else settings.web_max_form_bytes)


def build_webapp(ctx: WebCtx) -> web.Application:
    """Routes are absolute (``/app/...``) and the app is merged into the root app with
    ``add_routes`` semantics through a sub-application mounted at ``/app``."""
    sub = web.Application(middlewares=[friendly_errors, session_middleware])
    sub[WEB] = ctx
    sub[JINJA] = make_env()
    for name in AREAS:
        module = importlib.import_module(name)
        for route in module.routes:
            # RouteTableDef paths are written absolute for readability; the sub-app is
            # mounted at /app, so strip that prefix here
            path = route.path.removeprefix("/app") or "/"
            sub.router.add_route(route.method, path, route.handler, **route.kwargs)
    sub.router.add_static("/static/", STATIC, name="static", append_version=True)
    return sub


def mount(app: web.Application, ctx: WebCtx) -> None:
    if not ctx.settings.web_enabled:
        return
    settings = ctx.settings
    if not settings.web_public_url and not settings.web_demo_login:
        # redirect_uri is never built from the Host header: without the public URL the
        # platforms' sign-in is off (its pages say so), the REST API with tokens still works
        log.warning("mini-app sign-in is off: set FIELDBOT_WEB_PUBLIC_URL (the HTTPS origin"
                    " users reach /app on) to turn it on")
    app.add_subapp("/app/", build_webapp(ctx))

    async def to_app(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/app/")

    app.router.add_get("/app", to_app)
    try:
        api = importlib.import_module("webapp.api")
    except ModuleNotFoundError:
        return
    api.mount(app, ctx)
