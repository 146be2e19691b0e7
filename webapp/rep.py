"""Rep pages: one-tap sync (recent chats with customer mentions → pick → save as a visit), the
visit form (photo → OCR → customer suggestion; voice → transcript; note; follow-up date), my
customers, my deals, my follow-ups."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
