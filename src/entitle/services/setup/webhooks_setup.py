"""The outbound webhooks card: the endpoints the app's backend registered, and whether they take messages.

Read from the delivery log alone (services/delivery/outbound.py keeps every attempt): `verified` once the
message last sent to every live endpoint was accepted, `failing` with the receiver's own answer when it
was not or an endpoint was disabled for failing. The proof is a `webhook.test` message to each
live endpoint (`send_tests`), sent and logged like any other delivery.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.events import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from entitle.services.delivery import outbound
from entitle.services.setup.cards import Card

if TYPE_CHECKING:
    from entitle.context import AppContext

NOT_SET = "No endpoint yet: your backend registers one with POST /v1/webhook-endpoints (docs/webhooks.md)."


async def card(db: AsyncSession, context: AppContext) -> Card:
    endpoints = list(await db.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at)))
    live = [endpoint for endpoint in endpoints if endpoint.disabled_at is None]
    problems: list[str] = []
    live_urls = {endpoint.url for endpoint in live}
    for endpoint in endpoints:
        # Disabled because every retry failed, and not registered again since: the backend misses events.
        gave_up = (endpoint.disabled_reason or "").startswith("every retry")
        if endpoint.disabled_at is not None and gave_up and endpoint.url not in live_urls:
            problems.append(f"{endpoint.url} was disabled: {endpoint.disabled_reason}")
    verified = 0
    checked_at = None
    for endpoint in live:
        last = await _last_attempted(db, endpoint.id)
        if last is None:
            continue
        if last.status == DeliveryStatus.DELIVERED:
            verified += 1
            checked_at = max(filter(None, (checked_at, last.delivered_at)), default=None)
            continue
        retried = ", and is retried" if last.status == DeliveryStatus.PENDING else ""
        problems.append(f"the last message to {endpoint.url} failed ({last.last_error}){retried}")
    if not endpoints:
        return Card(key="webhooks", title="Outbound webhooks", state="not_set", sentence=NOT_SET)
    plural = len(live) != 1
    count = f"{len(live)} endpoint{'s' if plural else ''} hear{'' if plural else 's'} of account events"
    if problems:
        return Card(
            key="webhooks",
            title="Outbound webhooks",
            state="failing",
            sentence=f"{count}; " + "; ".join(problems) + ".",
            checked_at=checked_at,
        )
    if live and verified == len(live):
        sentence = f"{count}, and each accepted its latest message."
        return Card(
            key="webhooks",
            title="Outbound webhooks",
            state="verified",
            sentence=sentence,
            checked_at=checked_at,
        )
    if not live:
        return Card(key="webhooks", title="Outbound webhooks", state="not_set", sentence=NOT_SET)
    return Card(
        key="webhooks",
        title="Outbound webhooks",
        state="set",
        sentence=f"{count}; send a test message to prove each takes them.",
    )


async def send_tests(context: AppContext) -> list[WebhookDelivery]:
    """A `webhook.test` message to every live endpoint, sent now and logged; returns each delivery."""
    async with context.database.sessionmaker() as db:
        ids = list(await db.scalars(select(WebhookEndpoint.id).where(WebhookEndpoint.disabled_at.is_(None))))
    return [
        await outbound.send_test(
            context.database, context.http, endpoint_id, development=context.settings.is_development
        )
        for endpoint_id in ids
    ]


async def _last_attempted(db: AsyncSession, endpoint_id: uuid.UUID) -> WebhookDelivery | None:
    """The message last sent to the endpoint: its outcome is the endpoint's state now."""
    return await db.scalar(
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.last_attempt_at.is_not(None))
        .order_by(WebhookDelivery.last_attempt_at.desc())
        .limit(1)
    )
