"""Prometheus metrics, served at `GET /metrics` with the server key.

Counters live in one registry per process (prometheus-client's default). What is cheaper to count at
scrape time than to track (the depth and age of the provider-event queue) is read from the database
when `/metrics` is asked (`services.delivery.metrics_queue`), so it is right across processes and restarts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "entitle_http_requests_total",
    "HTTP requests answered, by method, route and status.",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "entitle_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
PROVIDER_EVENTS_RECEIVED = Counter(
    "entitle_provider_events_received_total",
    "Provider events stored in the inbox (first copies).",
    ["provider"],
)
PROVIDER_EVENTS_PROCESSED = Counter(
    "entitle_provider_events_processed_total", "Provider events processed successfully.", ["provider"]
)
PROVIDER_EVENTS_FAILED = Counter(
    "entitle_provider_events_failed_total", "Provider event processing attempts that failed.", ["provider"]
)
PROVIDER_QUEUE_DEPTH = Gauge(
    "entitle_provider_events_queue_depth",
    "Provider events not processed yet, by provider and status.",
    ["provider", "status"],
)
PROVIDER_QUEUE_AGE = Gauge(
    "entitle_provider_events_queue_oldest_age_seconds",
    "Age of the oldest provider event not processed yet (0 when none), by provider.",
    ["provider"],
)
WEBHOOK_DELIVERIES = Counter(
    "entitle_webhook_deliveries_total",
    "Outbound webhook deliveries by outcome: delivered, failed (retried), gave_up, blocked, canceled.",
    ["outcome"],
)
WEBHOOK_QUEUE_DEPTH = Gauge(
    "entitle_webhook_deliveries_pending", "Outbound webhook deliveries waiting to be sent."
)
STREAM_CONNECTIONS = Gauge(
    "entitle_stream_connections", "Open entitlement stream connections in this process."
)
ALERTS = Counter(
    "entitle_alerts_total", "Operator alerts, by cause kind and whether they were sent.", ["kind", "sent"]
)


@contextmanager
def stream_connection() -> Iterator[None]:
    """Count one open stream for as long as the block runs."""
    STREAM_CONNECTIONS.inc()
    try:
        yield
    finally:
        STREAM_CONNECTIONS.dec()


def exposition() -> tuple[bytes, str]:
    """The text format and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class RequestMetrics:
    """Pure ASGI middleware counting requests by route template (never the raw path: ids would explode it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "(unmatched)"
            method = scope.get("method", "GET")
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_DURATION.labels(method, template).observe(time.perf_counter() - started)
