"""Request ids, JSON logs and Prometheus metrics (issue 20, item 3).

Every request gets an id (the client's `X-Request-ID` if it is a plain token, else a new one), echoed in the
answer and put on every log record written while it is served (`RequestIdFilter`); `linli serve --log-format json`
writes one JSON object a line (`JsonFormatter`). Request counts and latencies are labelled by route template
(`/households/{household_id}`), never by raw path, so a scan of random URLs cannot grow the metrics without bound.
`/metrics` answers only a bearer of LINLI_METRICS_TOKEN(_FILE) (404 when none is set): figures about residents'
alerts and gateways are not for everyone. An answer whose head took longer than SLOW_ANSWER_SECONDS is also logged
(a warning, by route template), so that a person who waited has a line to find; a live sync feed's wait comes after
its head and is not counted.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.services import operations
from server.store import sweeps
from server.store.couch import Couch
from server.store.health import Health

REQUEST_ID = contextvars.ContextVar("request_id", default="-")
_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,64}")

# Module level: one set per process, however many apps a test makes.
REQUESTS = Counter("linli_http_requests_total", "HTTP requests answered", ["route", "method", "status"])
# A person waiting this long has likely given up; the latency histogram below holds the detail.
SLOW_ANSWER_SECONDS = 10.0
_log = logging.getLogger("linli.web")
LATENCY = Histogram("linli_http_request_seconds", "Time to the end of an answer", ["route"],
                    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))


class ObservabilityMiddleware:
    """Outermost: the request id for everything inside, and each answer counted under its route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _TOKEN.fullmatch(given) else uuid.uuid4().hex
        token = REQUEST_ID.set(request_id)
        started, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
                waited = time.perf_counter() - started
                if waited > SLOW_ANSWER_SECONDS:
                    _log.warning("slow answer: %s %s %d after %.1f s", scope["method"], _route(scope), status, waited)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            label = _route(scope)
            REQUESTS.labels(label, scope["method"], str(status)).inc()
            LATENCY.labels(label).observe(time.perf_counter() - started)
            REQUEST_ID.reset(token)


def _route(scope: Scope) -> str:
    """The route template a request matched (`/households/{household_id}`), never its raw path."""
    route = getattr(scope.get("route"), "path", None)
    return scope.get("root_path", "") + route if route else "(no route)"


class RequestIdFilter(logging.Filter):
    """Puts the id of the request being served (or "-") on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, request id, message (and the traceback, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(), "level": record.levelname,
                 "logger": record.name, "request_id": getattr(record, "request_id", REQUEST_ID.get()),
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def metrics_endpoint(couch: Couch, health: Health, token: str | None,
                     now: Callable[[], dt.datetime]) -> Callable[[Request], object]:
    async def metrics(request: Request) -> Response:
        given = request.headers.get("authorization", "")
        if not token or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return PlainTextResponse("Not Found", status_code=404)
        figures = await run_in_threadpool(operations.figures, couch, now())
        return Response(generate_latest() + generate_latest(_now_registry(health, figures, now())),
                        media_type=CONTENT_TYPE_LATEST)

    return metrics


def _now_registry(health: Health, figures: operations.OperationsFigures, now: dt.datetime) -> CollectorRegistry:
    """Figures read at the scrape, in a registry of their own (made afresh: nothing kept between scrapes)."""
    registry = CollectorRegistry()
    Gauge("linli_sync_live_clients", "Phones holding a live sync feed", registry=registry).set(
        health.sync_live_clients() if health.sync_live_clients else 0)
    last = health.last_sweep_at or health.started_at
    Gauge("linli_sweep_lag_seconds", "Seconds since the last whole minute sweep", registry=registry).set(
        (now - last).total_seconds())
    Gauge("linli_sweep_failures", "Minute sweeps with a failed part since start", registry=registry).set(
        health.sweep_failures)
    skipped = Gauge("linli_sweep_skipped_documents", "Documents a sweep part skipped (a conflict or an error on "
                    "one; the next sweep retries it) since start", ["part"], registry=registry)
    for part, count in sweeps.skipped().items():
        skipped.labels(part).set(count)
    Gauge("linli_database_restarts", "Times the embedded CouchDB was restarted", registry=registry).set(
        health.database_restarts)
    waiting = Gauge("linli_alerts_unacknowledged", "Alerts raised at most `le` seconds ago, not acknowledged",
                    ["le"], registry=registry)
    for bound, count in figures.alerts_waiting.items():
        waiting.labels("+Inf" if bound == float("inf") else f"{bound:g}").set(count)
    silence = Gauge("linli_gateway_silence_seconds", "Seconds since a BLE gateway's last heartbeat", ["gateway"],
                    registry=registry)
    for gateway, seconds in figures.gateway_silence.items():
        silence.labels(gateway).set(seconds)
    return registry
