"""Composition root: ``create_app(settings)`` builds everything and wires it through app keys.

No module-level singletons: every test can build as many independent apps as it likes.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import secrets
from contextlib import suppress
from types import SimpleNamespace

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from bot.dispatcher import Dispatcher, Ingress
from bot.errors import BAD_INPUT, unexpected
from bot.inbox import Inbox, wait_for_db
from bot.outbox import OutboxSender
from config import Settings
from storage.db import async_engine, is_sqlite, sync_engine
from storage.migrate import upgrade

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
INBOX = web.AppKey("inbox", Inbox)
DISPATCHER = web.AppKey("dispatcher", Dispatcher)
INGRESS = web.AppKey("ingress", Ingress)
OUTBOX = web.AppKey("outbox", OutboxSender)
ADAPTERS = web.AppKey("adapters", dict)
ENGINE = web.AppKey("engine", object)
HTTP = web.AppKey("http", ClientSession)
METRICS = web.AppKey("metrics", object)


@web.middleware
async def never_500(request: web.Request, handler):
    """Bad input gets a 4xx; a bug still answers, logged, without a stack trace leaking."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except BAD_INPUT as exc:
        log.warning("bad request to %s: %s", request.path, exc.__class__.__name__)
        return web.json_response({"error": "bad request"}, status=400)
    except Exception as exc:  # noqa: BLE001 - the catch-all: an id, one log line, no trace out
        return web.json_response({"error": "internal error", "id": unexpected(exc, request.path)},
                                 status=500)


@web.middleware
async def request_ids(request: web.Request, handler):
    """Every request gets an id (the caller's ``X-Request-Id`` if sane): in JSON log lines
    and echoed in the answer."""
    from bot.logformat import request_id

    rid = request.headers.get("X-Request-Id", "")
    if not (0 < len(rid) <= 64 and rid.replace("-", "").isalnum()):
        rid = secrets.token_hex(8)
    request_id.set(rid)
    resp = await handler(request)
    resp.headers["X-Request-Id"] = rid
    return resp


async def _plain_server_header(_request: web.Request, resp: web.StreamResponse) -> None:
    """``Server: FieldBot`` — no Python or aiohttp version for a scanner to match."""
    resp.headers["Server"] = "FieldBot"


async def healthz(request: web.Request) -> web.Response:
    app = request.app
    inbox = app[INBOX]
    transports = {p: t.status() for p, a in sorted(app[ADAPTERS].items())
                  if (t := getattr(a, "transport", None)) is not None}
    return web.json_response({"ok": True, "platforms": sorted(app[ADAPTERS]),
                              "transports": transports,
                              "config_errors": app[OUTBOX].problems,
                              "outbox_sent": app[OUTBOX].sent,
                              "inbox": {"writes": inbox.rows, "commits": inbox.batches}})


async def metrics_page(request: web.Request) -> web.Response:
    from bot.metrics import CONTENT_TYPE, allowed

    app = request.app
    if not allowed(request, app[SETTINGS].metrics_token.get_secret_value()):
        return web.json_response({"error": "forbidden"}, status=403)
    body = await app[METRICS].render(app[ENGINE])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def _api_hosts(settings: Settings) -> dict[str, str]:
    """host → platform, to label the platform API calls in /metrics."""
    from urllib.parse import urlsplit

    out = {}
    for platform, base in (("wecom", settings.wecom_api_base),
                           ("dingtalk", settings.dingtalk_api_base),
                           ("dingtalk", settings.dingtalk_oapi_base),
                           ("feishu", settings.feishu_api_base),
                           ("wecom_aibot", settings.wecom_aibot_ws_url)):
        host = (urlsplit(str(base)).netloc or "").lower()
        out.setdefault(host, platform)  # the simulator serves all on one host: first wins
    return out


def build_adapter(platform: str, settings: Settings, ingress: Ingress):
    module = importlib.import_module(f"integrations.{platform}.adapter")
    return module.Adapter(settings, ingress)


ROLES = ("all", "web", "worker")


def create_app(settings: Settings, routers=None, migrate: bool = True,
               role: str = "all") -> web.Application:
    """Build the bot. ``role``: "all" = one process does everything (tests, demo, small
    sites); "web" = acknowledge callbacks (and run card taps inline for their toast), leaving
    messages, delivery and jobs to "worker" processes, which serve no HTTP. The inbox and the
    outbox are the queues between them."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    from handlers import ROUTERS

    platforms = settings.enabled_platforms()
    url = settings.resolved_database_url()
    secret = settings.secret()
    sync = sync_engine(url)
    wait_for_db(sync)
    if migrate:
        upgrade(url)
    engine = async_engine(url)
    inbox = Inbox(url, engine=sync)
    if is_sqlite(url) and sync.url.database not in (None, "", ":memory:"):
        from bot.writegate import WriteGate

        # SQLite's one write lock as a FIFO: no busy-handler sleeps. The inbox writer needs
        # no turn: its table is in its own file (storage/db.py)
        WriteGate().install(engine)
    from bot.metrics import Metrics

    metrics = Metrics(_api_hosts(settings))
    app = web.Application(client_max_size=settings.max_body_bytes,
                          middlewares=[request_ids, metrics.middleware(), never_500])
    app.on_response_prepare.append(_plain_server_header)
    outbox = OutboxSender(engine, {}, max_attempts=settings.outbox_max_attempts,
                          postgres=not is_sqlite(url))
    outbox.lease_s = settings.outbox_lease_s
    # SQLite has one writer: more concurrent handler transactions only queue on its lock. On
    # PostgreSQL, too, the handlers share one event loop: past a few concurrent runs each one
    # only takes longer (an inline toast then misses its budget) without more throughput
    dispatcher = Dispatcher(settings, secret, engine, routers if routers is not None else ROUTERS,
                            on_outbox=outbox.wake, concurrency=4 if is_sqlite(url) else 6)
    dispatcher.postgres = not is_sqlite(url)
    dispatcher.inbox = inbox
    dispatcher.inline_messages = role == "all"
    ingress = Ingress(inbox, dispatcher)
    ingress.metrics = metrics
    app[SETTINGS] = settings
    app[INBOX] = inbox
    app[DISPATCHER] = dispatcher
    app[INGRESS] = ingress
    app[OUTBOX] = outbox
    app[ENGINE] = engine
    app[ADAPTERS] = {}
    app.router.add_get("/healthz", healthz)
    app[METRICS] = metrics
    metrics.source = lambda: SimpleNamespace(
        transports={p: t.status() for p, a in app[ADAPTERS].items()
                    if (t := getattr(a, "transport", None)) is not None},
        problems=outbox.problems, sent=outbox.sent)
    app.router.add_get("/metrics", metrics_page)

    # Routes must exist before the app freezes: adapters are built now, and get the shared
    # client session in start().
    http_holder: dict = {}
    for p in platforms:
        adapter = build_adapter(p, settings, ingress)
        app[ADAPTERS][p] = adapter
        for method, path, handler in adapter.routes():
            app.router.add_route(method, path, handler)
    outbox.adapters = app[ADAPTERS]
    dispatcher.inline_toast = {p for p, a in app[ADAPTERS].items()
                               if getattr(a, "inline_toast", False)}
    web_side, work_side = role in ("all", "web"), role in ("all", "worker")
    if role == "worker":  # polls the queues instead of being woken by this process's acks
        outbox.idle_s = 0.2
    # -- scheduled jobs (issue 5): start/stop only; see jobs/scheduler.py
    from jobs.scheduler import attach_scheduler
    scheduler = attach_scheduler(app, settings, engine, secret, on_outbox=outbox.wake)
    scheduler.add_periodic("chat_buffer.purge", _purge_job(engine, settings), 3600)
    scheduler.add_periodic("retention", _retention_job(engine, settings), 3600)
    from jobs.approvals import schedule as schedule_approvals  # reminders/escalation (issue 4)
    schedule_approvals(scheduler, engine, settings, secret, outbox.wake)
    # -- deferred jobs: voice notes, photos (issue 3); see jobs/worker.py
    from jobs.worker import attach_worker
    worker = attach_worker(app, settings, engine, secret, app[ADAPTERS], outbox.wake,
                           postgres=not is_sqlite(url))
    from integrations.registry import build_registry  # 工商信息 after OCR (issue 16 §4)
    worker.services.registry = build_registry(settings, engine)
    # -- the mini-app (issue 6): /app pages and the /api/v1 REST API; see webapp/app.py
    if web_side:
        from webapp.app import mount as mount_webapp
        from webapp.core import WebCtx

        mount_webapp(app, WebCtx(settings, engine, secret, app[ADAPTERS], outbox.wake,
                                 services={"media": worker.services}))

    async def lifecycle(app: web.Application):
        http_holder["s"] = ClientSession(timeout=ClientTimeout(total=30),
                                         connector=TCPConnector(limit=100),
                                         trace_configs=[metrics.trace_config()])
        inbox.start()  # a worker uses it for its "done" marks (batched, off the main lock)
        for adapter in app[ADAPTERS].values():
            await adapter.start(http_holder["s"])
        # long connections (issue 14) are held by the process that acknowledges callbacks,
        # or, for one whose replies go back over it (the WeCom AI bot), by the one that sends
        transports = [t for a in app[ADAPTERS].values()
                      if (t := getattr(a, "transport", None)) is not None
                      and (web_side if getattr(a, "transport_role", "web") == "web"
                           else work_side)]
        for transport in transports:
            await transport.start()
        sweeper = None
        if work_side:
            outbox.start()
            await scheduler.start()  # jobs (issue 5)
            worker.start()  # deferred jobs (issue 3)
            every, min_age = (2.0, 2.0) if role == "all" else (0.1, 0.0)
            sweeper = asyncio.create_task(_sweep_forever(dispatcher, every, min_age),
                                          name="inbox-sweeper")
        log.info("FieldBot up (%s): platforms=%s db=%s", role, ",".join(platforms) or "none",
                 "sqlite" if is_sqlite(url) else "postgresql")
        yield
        for transport in transports:  # no new events while the rest shuts down
            await transport.stop()
        if sweeper is not None:
            await scheduler.stop()  # jobs (issue 5)
            sweeper.cancel()
            with suppress(asyncio.CancelledError):
                await sweeper
        await dispatcher.drain()
        if work_side:
            await worker.stop()  # deferred jobs (issue 3)
            await outbox.stop()
        for adapter in app[ADAPTERS].values():
            await adapter.close()
        inbox.stop()
        await http_holder["s"].close()
        await engine.dispose()
        sync.dispose()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _sweep_forever(dispatcher: Dispatcher, every: float = 2.0,
                         min_age_s: float = 2.0) -> None:
    while True:
        try:
            if await dispatcher.sweep(min_age_s=min_age_s):
                continue  # more may be waiting: no pause while there is a backlog
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the sweeper outlives DB hiccups
            log.exception("sweep failed")
        await asyncio.sleep(every)


def _purge_job(engine, settings: Settings):
    """Hourly: drop buffered chat messages older than the window (issue 3)."""
    from sqlmodel.ext.asyncio.session import AsyncSession

    from bot.event import utcnow
    from storage.chat_buffer import purge_chat_buffer

    async def purge() -> int:
        async with AsyncSession(engine) as session:
            n = await purge_chat_buffer(session, utcnow(), settings.chat_buffer_days)
            await session.commit()
        if n:
            log.info("chat buffer: purged %d messages older than %d days", n,
                     settings.chat_buffer_days)
        return n

    return purge


def _retention_job(engine, settings: Settings):
    """Hourly: handled callbacks and sent messages past their windows (storage/retention)."""
    from bot.event import utcnow
    from storage.retention import purge_inbox, purge_outbox
    from storage.sign_ledger import purge as purge_signs

    async def purge() -> int:
        now = utcnow()
        await purge_signs(engine, now, settings.replay_window_s)  # DingTalk robot pairs
        n_in = await purge_inbox(engine, now, settings.inbox_keep_days)
        n_out = await purge_outbox(engine, now, settings.outbox_keep_days)
        if n_in or n_out:
            log.info("retention: purged %d handled callbacks (> %d days), %d sent messages"
                     " (> %d days)", n_in, settings.inbox_keep_days, n_out,
                     settings.outbox_keep_days)
        return n_in + n_out

    return purge
