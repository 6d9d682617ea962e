"""GET /metrics: Prometheus text with requests, provider events, queues and deliveries."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import httpx

from entitle.context import AppContext
from entitle.core.models.events import InboxStatus, ProviderEvent
from entitle.db.types import utcnow
from entitle.providers.base import IncomingEvent
from entitle.services.delivery.inbox import WorkItem
from tests.conftest import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def value(text: str, name: str, **labels: str) -> float:
    """The sample `name{labels}` in the exposition, 0 when absent."""
    for line in text.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? ([0-9.e+-]+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(key) == wanted for key, wanted in labels.items()):
            return float(match.group(3))
    return 0.0


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics", headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    await client.get("/v1/catalog")
    await client.get(f"/v1/accounts/{uuid.uuid4()}/entitlements", headers=ADMIN)
    await client.get("/no/such/path")
    after = await scrape(client)
    labels = {"method": "GET", "route": "/v1/catalog", "status": "200"}
    assert (
        value(after, "entitle_http_requests_total", **labels)
        == value(before, "entitle_http_requests_total", **labels) + 1
    )
    # Ids never become labels: the route's template does.
    assert value(after, "entitle_http_requests_total", route="/v1/accounts/{account_id}/entitlements") >= 1
    assert value(after, "entitle_http_requests_total", route="(unmatched)", status="404") >= 1


async def test_metrics_show_provider_events_and_the_queue(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    before = await scrape(client)
    incoming = IncomingEvent(event_id="e1", type="t", ordering_key=None, occurred_at=None)
    inbox = context.pipeline.inbox
    received = await inbox.receive(provider="metrics_test", incoming=incoming, raw_body=b"{}", claim=True)
    assert received.created
    await inbox.receive(provider="metrics_test", incoming=incoming, raw_body=b"{}", claim=True)  # a duplicate
    # No provider has this name: processing it fails, and is counted.
    context.pipeline.submit(WorkItem.of("metrics_test", None, received.event.id))
    await context.pipeline.wait_idle()
    async with context.database.transaction() as db:
        db.add(
            ProviderEvent(
                provider="stripe",
                event_id="evt_old",
                type="x",
                raw_body=b"{}",
                status=InboxStatus.PENDING,
                received_at=utcnow() - timedelta(minutes=10),
            )
        )
    after = await scrape(client)
    assert value(after, "entitle_provider_events_received_total", provider="metrics_test") == 1 + value(
        before, "entitle_provider_events_received_total", provider="metrics_test"
    )
    assert value(after, "entitle_provider_events_failed_total", provider="metrics_test") == 1 + value(
        before, "entitle_provider_events_failed_total", provider="metrics_test"
    )
    assert value(after, "entitle_provider_events_queue_depth", provider="metrics_test", status="failed") == 1
    assert value(after, "entitle_provider_events_queue_depth", provider="stripe", status="pending") == 1
    assert value(after, "entitle_provider_events_queue_oldest_age_seconds", provider="stripe") >= 600
    for name in ("entitle_webhook_deliveries_pending", "entitle_stream_connections"):
        assert f"# TYPE {name} gauge" in after
    assert "# TYPE entitle_webhook_deliveries_total counter" in after
    assert "# TYPE entitle_provider_events_processed_total counter" in after
