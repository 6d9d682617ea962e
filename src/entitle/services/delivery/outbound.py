"""Outbound webhooks: the app's own backend hears about account events, signed, in order, at least once.

Handlers announce, senders send: `core.events.record_event` writes one delivery row per subscribed
endpoint inside the transaction that records the account event; `deliver_due` (the worker) sends them
later, outside any request. Messages follow Standard Webhooks (https://www.standardwebhooks.com):
headers `webhook-id` (the delivery's id, the same on every retry), `webhook-timestamp` and
`webhook-signature` (`v1,<base64 HMAC-SHA256>`, made by the `standardwebhooks` package), so receivers
verify with a ready library in their language.

Order: an account's messages to an endpoint go out one at a time, oldest first. A delivery waits while
an older one for the same account and endpoint is still pending, so a receiver never hears
`entitlement.revoked` before the `entitlement.granted` it undoes. A delivery that fails is retried on
Standard Webhooks' schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); when the last retry fails it
is given up (kept in the log, re-sendable by hand) and, if the endpoint has not accepted anything since
that message was written, the endpoint is disabled: it is gone or broken, and its queue would otherwise
block its accounts forever. Disabled endpoints are sent nothing.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import and_, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from standardwebhooks import Webhook

from entitle import metrics
from entitle.core.events import WEBHOOK_TEST, message_body
from entitle.core.models.events import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from entitle.db.claims import Claim, claim_leases, holding
from entitle.db.engine import Database
from entitle.db.types import utcnow
from entitle.errors import Conflict, NotFound
from entitle.services.delivery.endpoint_urls import BlockedURL, pinned_url, resolve_target

log = logging.getLogger(__name__)

# Standard Webhooks' recommended schedule: the delay before each retry (attempt 2, 3, ...).
RETRY_SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
# How long a worker's claim on a delivery lasts before another worker may send it.
CLAIM_LEASE = timedelta(minutes=2)
SEND_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
USER_AGENT = "entitle-webhooks/1"


def new_endpoint_secret() -> str:
    """`whsec_` + base64 of 24 random bytes, the Standard Webhooks secret format."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def signed_headers(secret: str, message_id: str, body: str, *, now: datetime | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for `body`."""
    moment = now or utcnow()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, moment, body),
    }


def encode_body(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def message_id(delivery: WebhookDelivery) -> str:
    return f"msg_{delivery.id.hex}"


def _retry_delay(attempts: int) -> timedelta:
    return RETRY_SCHEDULE[min(attempts, len(RETRY_SCHEDULE)) - 1]


_OLDER = aliased(WebhookDelivery)
# Due, for a live endpoint, and not waiting behind an older pending message to the same account.
_DUE = (
    select(WebhookDelivery.id)
    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
    .where(
        WebhookDelivery.status == DeliveryStatus.PENDING,
        WebhookEndpoint.disabled_at.is_(None),
        ~exists().where(
            and_(
                _OLDER.endpoint_id == WebhookDelivery.endpoint_id,
                _OLDER.account_id == WebhookDelivery.account_id,
                _OLDER.status == DeliveryStatus.PENDING,
                _OLDER.created_at < WebhookDelivery.created_at,
            )
        ),
    )
)


async def deliver_due(
    database: Database,
    http: httpx.AsyncClient,
    *,
    development: bool = False,
    limit: int = 50,
    lease: timedelta = CLAIM_LEASE,
) -> int:
    """Send deliveries whose time has come; returns how many were claimed.

    `development` allows http and loopback receivers (see `services.delivery.endpoint_urls`).
    """
    now = utcnow()
    async with database.transaction() as db:
        await _cancel_for_disabled_endpoints(db)
        # Claimed with a lease, and only rows still due at the moment of the claim, so a second worker
        # that read the same rows finds them taken (SQLite has no row locks).
        claimed = await claim_leases(
            db,
            WebhookDelivery,
            (WebhookDelivery.status == DeliveryStatus.PENDING) & (WebhookDelivery.next_attempt_at <= now),
            pick=_DUE.where(WebhookDelivery.next_attempt_at <= now),
            order_by=WebhookDelivery.created_at,
            limit=limit,
            lease=lease,
        )
    for claim in claimed:
        await send_delivery(database, http, claim.id, development=development, claim=claim, lease=lease)
    return len(claimed)


async def _cancel_for_disabled_endpoints(db: AsyncSession) -> None:
    disabled = select(WebhookEndpoint.id).where(WebhookEndpoint.disabled_at.is_not(None))
    result = await db.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.endpoint_id.in_(disabled))
        .values(status=DeliveryStatus.CANCELED, next_attempt_at=None, last_error="the endpoint is disabled")
        .execution_options(synchronize_session=False)
    )
    count = getattr(result, "rowcount", 0) or 0
    if count > 0:
        metrics.WEBHOOK_DELIVERIES.labels("canceled").inc(count)


async def send_delivery(
    database: Database,
    http: httpx.AsyncClient,
    delivery_id: uuid.UUID,
    *,
    development: bool,
    claim: Claim | None = None,
    lease: timedelta = CLAIM_LEASE,
) -> WebhookDelivery | None:
    """Send one delivery now (whatever its status) and record the outcome.

    `claim`: the worker's claim on the delivery, held (`db.claims.holding`) while it is sent."""
    async with database.sessionmaker() as db:
        delivery = await db.get(WebhookDelivery, delivery_id)
        endpoint = await db.get(WebhookEndpoint, delivery.endpoint_id) if delivery else None
        if delivery is None or endpoint is None:
            return None
        if endpoint.disabled_at is not None:
            delivery.status = DeliveryStatus.CANCELED
            delivery.next_attempt_at = None
            delivery.last_error = "the endpoint is disabled"
            metrics.WEBHOOK_DELIVERIES.labels("canceled").inc()
            await db.commit()
            return delivery
        # No transaction (nor pooled connection) is held while the receiver takes its time.
        await db.commit()
        if claim is None:
            error, code, outcome = await _post(http, endpoint, delivery, development=development)
        else:
            # The batch's lease may have run out while the deliveries before this one went (a slow
            # receiver): sent only if no other worker took the delivery since.
            async with holding(database, WebhookDelivery, claim, lease) as still_ours:
                if not still_ours:
                    return None
                error, code, outcome = await _post(http, endpoint, delivery, development=development)
        now = utcnow()
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.response_code = code
        if error is None:
            delivery.status = DeliveryStatus.DELIVERED
            delivery.delivered_at = now
            delivery.last_error = None
            delivery.next_attempt_at = None
        else:
            delivery.last_error = error[:500]
            if delivery.attempts >= MAX_ATTEMPTS or delivery.status == DeliveryStatus.FAILED:
                delivery.status = DeliveryStatus.FAILED
                delivery.next_attempt_at = None
                outcome = "gave_up"
                await _disable_if_dead(db, endpoint, delivery, now)
            else:
                delivery.status = DeliveryStatus.PENDING
                delivery.next_attempt_at = now + _retry_delay(delivery.attempts)
        metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
        await db.commit()
        return delivery


async def _post(
    http: httpx.AsyncClient, endpoint: WebhookEndpoint, delivery: WebhookDelivery, *, development: bool
) -> tuple[str | None, int | None, str]:
    """(error or None, response status or None, metrics outcome)."""
    body = encode_body(delivery.payload)
    try:
        target = await resolve_target(endpoint.url, development=development)
    except BlockedURL as exc:
        return exc.message, None, "blocked"
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        # The connection goes to the checked address; the name travels in Host and TLS SNI.
        "Host": _host_header(endpoint.url, target.host),
        **signed_headers(endpoint.secret, message_id(delivery), body),
    }
    try:
        response = await http.post(
            pinned_url(target),
            content=body.encode(),
            headers=headers,
            timeout=SEND_TIMEOUT,
            follow_redirects=False,
            extensions={"sni_hostname": target.host},
        )
    except httpx.HTTPError as exc:
        return f"{exc.__class__.__name__}: {exc}", None, "failed"
    if 200 <= response.status_code < 300:
        return None, response.status_code, "delivered"
    return f"the endpoint answered {response.status_code}", response.status_code, "failed"


def _host_header(url: str, host: str) -> str:
    netloc = httpx.URL(url).netloc.decode()
    return netloc.rsplit("@", 1)[-1] if netloc else host


async def _disable_if_dead(
    db: AsyncSession, endpoint: WebhookEndpoint, delivery: WebhookDelivery, now: datetime
) -> None:
    """Disable the endpoint when nothing was accepted since the given-up message was written."""
    accepted_since = await db.scalar(
        select(
            exists().where(
                WebhookDelivery.endpoint_id == endpoint.id,
                WebhookDelivery.status == DeliveryStatus.DELIVERED,
                WebhookDelivery.delivered_at >= delivery.created_at,
            )
        )
    )
    if not accepted_since and endpoint.disabled_at is None:
        endpoint.disabled_at = now
        endpoint.disabled_reason = (
            f"every retry of message {message_id(delivery)} failed: {delivery.last_error}"
        )
        log.warning("webhook endpoint %s disabled after failed deliveries", endpoint.id)


# -- what the server-key API offers ---------------------------------------------------------------


async def queue_test(db: AsyncSession, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A `webhook.test` message for the endpoint, whatever event types it subscribed to."""
    now = utcnow()
    payload = message_body(WEBHOOK_TEST, now, None, None, {"endpoint_id": str(endpoint.id)})
    delivery = WebhookDelivery(
        endpoint_id=endpoint.id,
        account_id=None,
        event_type=WEBHOOK_TEST,
        payload=payload,
        created_at=now,
        # Sent by the request that asked for it; the worker picks it up only if that send never happened.
        next_attempt_at=now + CLAIM_LEASE,
    )
    db.add(delivery)
    await db.flush()
    return delivery


async def find_endpoint(db: AsyncSession, endpoint_id: uuid.UUID | None) -> WebhookEndpoint:
    endpoint = await db.get(WebhookEndpoint, endpoint_id) if endpoint_id else None
    if endpoint is None:
        raise NotFound("There is no webhook endpoint with this id.", code="webhook_endpoint_not_found")
    return endpoint


def require_live(endpoint: WebhookEndpoint) -> None:
    """Disabled endpoints are sent nothing, not even by hand."""
    if endpoint.disabled_at is not None:
        raise Conflict(
            f"This webhook endpoint is disabled ({endpoint.disabled_reason}); register it again.",
            code="webhook_endpoint_disabled",
        )


async def find_delivery(
    db: AsyncSession, endpoint_id: uuid.UUID | None, delivery_id: uuid.UUID | None
) -> WebhookDelivery:
    delivery = await db.get(WebhookDelivery, delivery_id) if delivery_id else None
    if delivery is None or delivery.endpoint_id != endpoint_id:
        raise NotFound("This endpoint has no delivery with this id.", code="webhook_delivery_not_found")
    return delivery


async def recent_deliveries(
    db: AsyncSession, endpoint_id: uuid.UUID, *, limit: int, status: str | None = None
) -> list[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    rows = await db.scalars(query.order_by(WebhookDelivery.created_at.desc()).limit(limit))
    return list(rows)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": str(delivery.id),
        "webhook_id": message_id(delivery),
        "event_type": delivery.event_type,
        "account_id": str(delivery.account_id) if delivery.account_id else None,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "response_code": delivery.response_code,
        "last_error": delivery.last_error,
        "created_at": _iso(delivery.created_at),
        "last_attempt_at": _iso(delivery.last_attempt_at),
        "next_attempt_at": _iso(delivery.next_attempt_at)
        if delivery.status == DeliveryStatus.PENDING
        else None,
        "delivered_at": _iso(delivery.delivered_at),
        "payload": delivery.payload,
    }


def endpoint_json(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, object]:
    body: dict[str, object] = {
        "id": str(endpoint.id),
        "url": endpoint.url,
        "event_types": endpoint.event_types,
        "created_at": endpoint.created_at.isoformat(),
        "disabled_at": endpoint.disabled_at.isoformat() if endpoint.disabled_at else None,
        "disabled_reason": endpoint.disabled_reason,
    }
    if with_secret:
        body["secret"] = endpoint.secret
    return body


async def send_test(
    database: Database, http: httpx.AsyncClient, endpoint_id: uuid.UUID | None, *, development: bool
) -> WebhookDelivery:
    """Queue a `webhook.test` message (committed first, so it is in the log whatever happens), send it now."""
    async with database.transaction() as db:
        endpoint = await find_endpoint(db, endpoint_id)
        require_live(endpoint)
        delivery_id = (await queue_test(db, endpoint)).id
    sent = await send_delivery(database, http, delivery_id, development=development)
    assert sent is not None  # committed just above; deliveries are never deleted
    return sent


async def retry_now(
    database: Database,
    http: httpx.AsyncClient,
    endpoint_id: uuid.UUID | None,
    delivery_id: uuid.UUID | None,
    *,
    development: bool,
) -> WebhookDelivery:
    """Send a delivery again now, with its original `webhook-id`, whatever its status."""
    async with database.sessionmaker() as db:
        found = (await find_delivery(db, endpoint_id, delivery_id)).id
        require_live(await find_endpoint(db, endpoint_id))
    sent = await send_delivery(database, http, found, development=development)
    assert sent is not None
    return sent
