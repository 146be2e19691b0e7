"""Admin console: the bot's rules (thresholds, approval chains, alert routing, quiet hours,
health weights) with validation, dry-run preview, versions and the audit log; users, teams,
roles; binding a platform chat to a team."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
