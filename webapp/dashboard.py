"""Manager dashboard: funnel by stage with conversion, collections, stale deals, per-rep output,
customer health grades; server-drawn SVG charts, filters by team and period, drill-down."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
