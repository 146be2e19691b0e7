"""Approver pages: pending approvals with the same actions as the cards (one state machine,
``storage.approvals``; the cards are updated through the same notifier), and history."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
