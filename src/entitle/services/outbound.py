"""Outbound webhooks: the app's own backend hears about account events, signed, at least once.

Handlers announce, senders send: `core.events.record_event` writes one delivery row per subscribed
endpoint inside the transaction that records the account event; `deliver_due` (the worker) sends them
later, outside any request. A delivery is signed the way Stripe signs its own (`Entitle-Signature:
t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`) so receivers can reuse familiar verification code, and
is retried with backoff until the endpoint answers 2xx.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select

from entitle.core.models.events import WebhookDelivery, WebhookEndpoint
from entitle.db.engine import Database
from entitle.db.types import utcnow

SIGNATURE_HEADER = "Entitle-Signature"
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=6)
# Past this many attempts (about four days with the backoff above) a delivery is given up and kept.
MAX_ATTEMPTS = 25


def new_endpoint_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


async def deliver_due(database: Database, http: httpx.AsyncClient, *, limit: int = 50) -> int:
    """Send deliveries whose time has come; returns how many were attempted."""
    now = utcnow()
    async with database.transaction() as db:
        query = (
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.created_at)
            .limit(limit)
        )
        if db.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list((await db.scalars(query)).all())
        # Claim them for a while so a second worker does not send them at the same time.
        for delivery_id in ids:
            delivery = await db.get(WebhookDelivery, delivery_id)
            if delivery is not None:
                delivery.next_attempt_at = now + timedelta(minutes=2)
    for delivery_id in ids:
        await _deliver(database, http, delivery_id)
    return len(ids)


async def _deliver(database: Database, http: httpx.AsyncClient, delivery_id: uuid.UUID) -> None:
    async with database.sessionmaker() as db:
        delivery = await db.get(WebhookDelivery, delivery_id)
        endpoint = await db.get(WebhookEndpoint, delivery.endpoint_id) if delivery else None
        if delivery is None or endpoint is None:
            return
        body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(endpoint.secret, body, int(time.time())),
            "User-Agent": "entitle-webhooks/1",
        }
        error: str | None = None
        try:
            response = await http.post(endpoint.url, content=body, headers=headers, timeout=10)
            if not 200 <= response.status_code < 300:
                error = f"endpoint answered {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{exc.__class__.__name__}: {exc}"[:500]
        delivery.attempts += 1
        if error is None:
            delivery.status = "delivered"
            delivery.delivered_at = utcnow()
            delivery.last_error = None
        else:
            delivery.last_error = error
            delivery.status = "failed" if delivery.attempts >= MAX_ATTEMPTS else "pending"
            delivery.next_attempt_at = utcnow() + _backoff(delivery.attempts)
        await db.commit()


def _backoff(attempts: int) -> timedelta:
    delay: timedelta = FIRST_RETRY * (2 ** min(attempts - 1, 20))
    return min(delay, MAX_RETRY)


def endpoint_json(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, object]:
    body: dict[str, object] = {
        "id": str(endpoint.id),
        "url": endpoint.url,
        "event_types": endpoint.event_types,
        "created_at": endpoint.created_at.isoformat(),
        "disabled_at": endpoint.disabled_at.isoformat() if endpoint.disabled_at else None,
    }
    if with_secret:
        body["secret"] = endpoint.secret
    return body


def parse_signature(header: str) -> tuple[int, list[str]]:
    """(timestamp, v1 signatures) from an `Entitle-Signature` header; (0, []) when malformed."""
    timestamp, signatures = 0, []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    return timestamp, signatures


def verify_signature(
    secret: str, body: bytes, header: str, *, tolerance: int = 300, now: datetime | None = None
) -> bool:
    """Receiver-side check, used by tests and offered to Python receivers."""
    timestamp, signatures = parse_signature(header)
    current = int((now or utcnow()).timestamp())
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)
