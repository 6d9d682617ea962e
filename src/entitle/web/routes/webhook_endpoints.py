"""Outbound webhook endpoints, managed by the app's own backend with the server key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import AnyHttpUrl, Field
from sqlalchemy import select

from entitle.core.models.events import DeliveryStatus, WebhookEndpoint
from entitle.db.types import utcnow
from entitle.services.delivery import outbound
from entitle.services.delivery.endpoint_urls import check_new_url
from entitle.web.deps import AdminDep, ContextDep, SessionDep, SettingsDep
from entitle.web.schemas import StrictBody, parse_uuid

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["outbound webhooks"])

EVENT_TYPE = Field(max_length=80, pattern=r"^[a-z_]+(\.[a-z_]+)*(\.\*)?$")


class EndpointBody(StrictBody):
    url: AnyHttpUrl = Field(description="https (and a public address) in production.")
    # Empty: every event. Exact types (`entitlement.granted`) or prefixes (`entitlement.*`).
    event_types: list[Annotated[str, EVENT_TYPE]] = Field(default_factory=list, max_length=50)


@router.post("", status_code=201)
async def create_endpoint(
    body: EndpointBody, _admin: AdminDep, db: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    # Checked again (after resolving the host) at every delivery; this catches the obvious at once.
    await check_new_url(str(body.url), development=settings.is_development)
    endpoint = WebhookEndpoint(
        url=str(body.url), secret=outbound.new_endpoint_secret(), event_types=body.event_types
    )
    db.add(endpoint)
    await db.flush()
    # The signing secret is shown once, at creation, like Stripe's.
    return outbound.endpoint_json(endpoint, with_secret=True)


@router.get("")
async def list_endpoints(_admin: AdminDep, db: SessionDep) -> dict[str, Any]:
    endpoints = (await db.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at))).all()
    return {"webhook_endpoints": [outbound.endpoint_json(endpoint) for endpoint in endpoints]}


@router.delete("/{endpoint_id}", status_code=204)
async def disable_endpoint(endpoint_id: str, _admin: AdminDep, db: SessionDep) -> Response:
    endpoint = await outbound.find_endpoint(db, parse_uuid(endpoint_id))
    if endpoint.disabled_at is None:
        endpoint.disabled_at = utcnow()
        endpoint.disabled_reason = "deleted through the API"
    return Response(status_code=204)


@router.get("/{endpoint_id}/deliveries")
async def list_deliveries(
    endpoint_id: str,
    _admin: AdminDep,
    db: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    status: DeliveryStatus | None = None,
) -> dict[str, Any]:
    """Recent deliveries to the endpoint, newest first, with status, attempts and the last answer."""
    endpoint = await outbound.find_endpoint(db, parse_uuid(endpoint_id))
    rows = await outbound.recent_deliveries(db, endpoint.id, limit=limit, status=status)
    return {"deliveries": [outbound.delivery_json(delivery) for delivery in rows]}


@router.post("/{endpoint_id}/deliveries/{delivery_id}/retry")
async def retry_delivery(
    endpoint_id: str, delivery_id: str, _admin: AdminDep, context: ContextDep
) -> dict[str, Any]:
    """Send the delivery again now (same `webhook-id`); answers with its new state."""
    delivery = await outbound.retry_now(
        context.database,
        context.http,
        parse_uuid(endpoint_id),
        parse_uuid(delivery_id),
        development=context.settings.is_development,
    )
    return outbound.delivery_json(delivery)


@router.post("/{endpoint_id}/test")
async def send_test(endpoint_id: str, _admin: AdminDep, context: ContextDep) -> dict[str, Any]:
    """Send a `webhook.test` message now, whatever event types the endpoint subscribed to."""
    delivery = await outbound.send_test(
        context.database, context.http, parse_uuid(endpoint_id), development=context.settings.is_development
    )
    return outbound.delivery_json(delivery)
