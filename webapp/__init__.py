"""The mini-app (issue 6): workbench pages for reps, approvers, managers and admins, served by
aiohttp with Jinja2 templates under ``/app``, and the REST API under ``/api/v1``.

``webapp.app.build_webapp`` is called by the composition root (``bot.app.create_app``); every
page module holds one area and exports ``routes`` (an ``aiohttp.web.RouteTableDef``).
The pages use the same state machines and card notifiers as the chat handlers, so acting on a
page and tapping a card are one and the same change.
"""
