"""Outbound webhook endpoints, managed by the app's own backend with the server key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import AnyHttpUrl, Field
from sqlalchemy import select

from entitle.core.models.events import WebhookEndpoint
from entitle.db.types import utcnow
from entitle.errors import InvalidRequest, NotFound
from entitle.services.outbound import endpoint_json, new_endpoint_secret
from entitle.web.deps import AdminDep, SessionDep, SettingsDep
from entitle.web.schemas import StrictBody, parse_uuid

router = APIRouter(prefix="/v1/webhook-endpoints", tags=["outbound webhooks"])


class EndpointBody(StrictBody):
    url: AnyHttpUrl
    # Empty: every event. Exact types (`entitlement.granted`) or prefixes (`entitlement.*`).
    event_types: list[str] = Field(default_factory=list, max_length=50)


@router.post("", status_code=201)
async def create_endpoint(
    body: EndpointBody, _admin: AdminDep, db: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    if not settings.is_development and body.url.scheme != "https":
        raise InvalidRequest("Webhook endpoints must use https.", code="insecure_webhook_url")
    endpoint = WebhookEndpoint(url=str(body.url), secret=new_endpoint_secret(), event_types=body.event_types)
    db.add(endpoint)
    await db.flush()
    # The signing secret is shown once, at creation, like Stripe's.
    return endpoint_json(endpoint, with_secret=True)


@router.get("")
async def list_endpoints(_admin: AdminDep, db: SessionDep) -> dict[str, Any]:
    endpoints = (await db.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at))).all()
    return {"webhook_endpoints": [endpoint_json(endpoint) for endpoint in endpoints]}


@router.delete("/{endpoint_id}", status_code=204)
async def disable_endpoint(endpoint_id: str, _admin: AdminDep, db: SessionDep) -> Response:
    key = parse_uuid(endpoint_id)
    endpoint = await db.get(WebhookEndpoint, key) if key else None
    if endpoint is None:
        raise NotFound("There is no webhook endpoint with this id.", code="webhook_endpoint_not_found")
    endpoint.disabled_at = endpoint.disabled_at or utcnow()
    return Response(status_code=204)
