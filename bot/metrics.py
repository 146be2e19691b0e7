"""``/metrics`` in the Prometheus text format (issue 18), one registry per app (no globals).

Counted as they happen (cheap: a labelled counter is ~1 µs on the acknowledgement path):
callbacks accepted / duplicate by platform (``Ingress``), callbacks refused by platform and
status (a middleware on ``/webhooks/…``), platform API calls by platform and status with their
latency (an aiohttp trace on the shared client session). Read at scrape time: inbox depth and
lag, outbox depth and lag per platform, dead letters per platform and error code, jobs (media
and reports) per name and status with the queue's lag, open web sessions, long connections
(up, reconnects, seconds since the last frame), configuration errors.

Access: ``Authorization: Bearer <FIELDBOT_METRICS_TOKEN>`` when a token is set (compared in
constant time), else loopback clients only.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from bot.event import utcnow
from storage.metrics_queries import snapshot

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
API_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, api_hosts: dict[str, str]):
        """``api_hosts``: host → platform, to label outgoing calls."""
        disable_created_metrics()  # no *_created series: noise on every scrape
        self.registry = CollectorRegistry(auto_describe=True)
        self.api_hosts = api_hosts
        r = self.registry
        self.callbacks = Counter("fieldbot_callbacks", "Callbacks committed to the inbox",
                                 ["platform", "outcome"], registry=r)
        self.refused = Counter("fieldbot_callbacks_refused", "Callbacks refused (4xx/5xx)",
                               ["platform", "status"], registry=r)
        self.api = Histogram("fieldbot_platform_api_seconds", "Platform API call latency",
                             ["platform", "status"], buckets=API_BUCKETS, registry=r)
        self.api_errors = Counter("fieldbot_platform_api_errors",
                                  "Platform API calls that failed without an answer",
                                  ["platform", "error"], registry=r)
        self._state: dict = {}
        self.source = None  # set by the app: a callable returning live process figures
        r.register(_Scraped(self))

    # -- the acknowledgement path -----------------------------------------------------------
    def accepted(self, platform: str, new: bool) -> None:
        self.callbacks.labels(platform, "accepted" if new else "duplicate").inc()

    def middleware(self):
        refused = self.refused

        @web.middleware
        async def count_refusals(request: web.Request, handler):
            path = request.path
            if not path.startswith("/webhooks/"):
                return await handler(request)
            platform = path.split("/", 3)[2] or "?"
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                refused.labels(platform, str(exc.status)).inc()
                raise
            if resp.status >= 400:
                refused.labels(platform, str(resp.status)).inc()
            return resp

        return count_refusals

    # -- outgoing calls ---------------------------------------------------------------------
    def trace_config(self) -> aiohttp.TraceConfig:
        tc = aiohttp.TraceConfig()

        async def start(_s, ctx, _p) -> None:
            ctx.t0 = time.perf_counter()

        async def end(_s, ctx, params) -> None:
            self.api.labels(self._platform(params.url), str(params.response.status)).observe(
                time.perf_counter() - ctx.t0)

        async def failed(_s, ctx, params) -> None:
            self.api_errors.labels(self._platform(params.url),
                                   params.exception.__class__.__name__).inc()

        tc.on_request_start.append(start)
        tc.on_request_end.append(end)
        tc.on_request_exception.append(failed)
        return tc

    def _platform(self, url) -> str:
        host = (urlsplit(str(url)).netloc or "").lower()
        return self.api_hosts.get(host, "other")

    # -- scraping ---------------------------------------------------------------------------
    async def render(self, engine) -> bytes:
        self._state = await snapshot(engine, utcnow())
        return generate_latest(self.registry)


class _Scraped:
    """The figures read at scrape time (``Metrics.render`` fills ``_state`` first)."""

    def __init__(self, metrics: Metrics):
        self.m = metrics

    def describe(self):
        return []

    def collect(self):
        s = self.m._state
        live = self.m.source() if self.m.source else SimpleNamespace(
            transports={}, problems={}, sent=0)
        if s:
            yield _gauge("fieldbot_inbox_pending", "Callbacks waiting to be handled",
                         value=s["inbox_pending"])
            yield _gauge("fieldbot_inbox_lag_seconds", "Age of the oldest unhandled callback",
                         value=s["inbox_lag_s"])
            yield _gauge("fieldbot_inbox_failed", "Callbacks whose handler failed for good",
                         value=s["inbox_failed"])
            yield _gauge("fieldbot_outbox_pending", "Messages waiting to be sent",
                         ["platform"], s["outbox_pending"])
            yield _gauge("fieldbot_outbox_lag_seconds", "Age of the oldest unsent message",
                         ["platform"], s["outbox_lag_s"])
            yield _gauge("fieldbot_outbox_dead", "Messages given up on (dead letters)",
                         ["platform", "code"], s["outbox_dead"])
            yield _gauge("fieldbot_jobs", "Deferred jobs (speech, OCR, reports)",
                         ["name", "status"], s["jobs"])
            yield _gauge("fieldbot_jobs_lag_seconds", "Age of the oldest pending job",
                         ["name"], s["jobs_lag_s"])
            yield _gauge("fieldbot_web_sessions", "Open mini-app sessions", value=s["sessions"])
            yield _gauge("fieldbot_scheduled_job_runs", "Scheduled job runs recorded (alerts,"
                         " digest …)", ["name"], s["scheduled_runs"])
            yield _gauge("fieldbot_scheduled_job_last_run_seconds", "Duration of the latest"
                         " finished scheduled run", ["name"], s["scheduled_last_s"])
            yield _gauge("fieldbot_jobs_runs_last_hour", "Deferred jobs run in the last hour",
                         ["name"], s["job_runs_1h"])
            yield _gauge("fieldbot_jobs_run_seconds_avg", "Mean run time of deferred jobs"
                         " (last hour)", ["name"], s["job_avg_s"])
            yield _gauge("fieldbot_jobs_run_seconds_max", "Longest run of a deferred job"
                         " (last hour)", ["name"], s["job_max_s"])
        yield _gauge("fieldbot_outbox_sent_process", "Messages this process sent since start",
                     value=live.sent)
        up, reconnects, quiet = {}, {}, {}
        now = time.time()
        for platform, t in live.transports.items():
            key = (platform, t["transport"])
            up[key] = 1 if t["state"] == "connected" else 0
            reconnects[key] = t["reconnects"]
            if t.get("last_frame_ts"):
                quiet[key] = max(0.0, now - t["last_frame_ts"])
        yield _gauge("fieldbot_transport_up", "Long connection connected (1) or not (0)",
                     ["platform", "transport"], up)
        yield _gauge("fieldbot_transport_reconnects", "Reconnects since start",
                     ["platform", "transport"], reconnects)
        yield _gauge("fieldbot_transport_quiet_seconds", "Seconds since the last frame",
                     ["platform", "transport"], quiet)
        yield _gauge("fieldbot_config_errors", "A configuration error an admin must fix",
                     ["platform", "code"],
                     {(p, str(e.get("code") or "")): 1 for p, e in live.problems.items()})


def _gauge(name: str, doc: str, labels: list[str] | None = None, values=None,
           value: float | None = None) -> GaugeMetricFamily:
    if labels is None:
        return GaugeMetricFamily(name, doc, value=float(value or 0))
    g = GaugeMetricFamily(name, doc, labels=labels)
    for key, v in (values or {}).items():
        g.add_metric(list(key) if isinstance(key, tuple) else [key], float(v))
    return g


def allowed(request: web.Request, token: str) -> bool:
    if token:
        got = request.headers.get("Authorization", "")
        return hmac.compare_digest(got.encode(), f"Bearer {token}".encode())
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False
