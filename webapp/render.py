"""Jinja2 rendering: one environment per app (autoescaped), templates in ``webapp/templates``.

Every page gets ``user``, ``csrf`` (the token for its forms), ``nav`` (the links this user may
open) and ``path``; a page passes its own values on top.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from webapp.core import MANAGERS, SESSION_KEY, current_user, web_ctx
from webapp.session import csrf_token

TEMPLATES = Path(__file__).parent / "templates"
JINJA = web.AppKey("jinja", jinja2.Environment)

# (path, label, roles allowed; None = everyone signed in)
NAV: list[tuple[str, str, tuple[str, ...] | None]] = [
    ("/app/", "首页 Home", None),
    ("/app/sync", "同步 Sync", None),
    ("/app/visits/new", "拜访 Visit", None),
    ("/app/customers", "客户 Customers", None),
    ("/app/deals", "商机 Deals", None),
    ("/app/followups", "跟进 Follow-ups", None),
    ("/app/approvals", "审批 Approvals", None),
    ("/app/dashboard", "看板 Dashboard", MANAGERS),
    ("/app/admin", "管理 Admin", ("admin",)),
    ("/app/data", "导入导出 Data", ("admin",)),
]


def money(x: Any) -> str:
    if x is None:
        return "—"
    x = float(x)
    return f"¥{x:,.0f}" if x.is_integer() else f"¥{x:,.2f}"


def local_dt(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M", tz: str = "Asia/Shanghai"
             ) -> str:
    if value is None:
        return "—"
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo(tz)).strftime(fmt)


def iso_date(value: date | None) -> str:
    return value.isoformat() if value else "—"


def make_env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(("html", "xml")),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(money=money, local_dt=local_dt, iso_date=iso_date)
    return env


def nav_for(role: str | None) -> list[tuple[str, str]]:
    return [(p, label) for p, label, roles in NAV
            if role is not None and (roles is None or role in roles)]


def render(request: web.Request, template: str, status: int = 200, **values: Any
           ) -> web.Response:
    env = request.config_dict[JINJA]
    user = current_user(request)
    sess = request.get(SESSION_KEY)
    ctx = web_ctx(request)
    page = env.get_template(template).render(
        user=user, csrf=csrf_token(ctx.secret, sess.nonce) if sess else "",
        nav=nav_for(user.role if user else None), path=request.path, **values)
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


def error_page(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "error.html", status=status, status_code=status, message=message)
