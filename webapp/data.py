"""Data in and out: CSV / XLSX import of customers, contacts, deals and invoices with a
validation report and no partial import; export of the same."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
