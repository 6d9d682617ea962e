"""What `/metrics` reads from the database at scrape time: queue depth and age, pending deliveries."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle import metrics
from entitle.core.models.events import DeliveryStatus, InboxStatus, ProviderEvent, WebhookDelivery
from entitle.db.types import utcnow

# Not processed yet: waiting, failed (to be retried) or parked (waiting for its account).
_WAITING = (InboxStatus.PENDING, InboxStatus.FAILED, InboxStatus.PARKED)
_QUEUE = (
    select(ProviderEvent.provider, ProviderEvent.status, func.count(), func.min(ProviderEvent.received_at))
    .where(ProviderEvent.status.in_(_WAITING))
    .group_by(ProviderEvent.provider, ProviderEvent.status)
)
_PENDING_DELIVERIES = select(func.count()).where(WebhookDelivery.status == DeliveryStatus.PENDING)


async def scrape(db: AsyncSession) -> tuple[bytes, str]:
    """Refresh the database-backed gauges, then render every metric."""
    now = utcnow()
    metrics.PROVIDER_QUEUE_DEPTH.clear()
    metrics.PROVIDER_QUEUE_AGE.clear()
    oldest: dict[str, float] = {}
    for provider, status, count, first in (await db.execute(_QUEUE)).all():
        metrics.PROVIDER_QUEUE_DEPTH.labels(provider, status).set(count)
        if first is not None:
            age = max(0.0, (now - first).total_seconds())
            oldest[provider] = max(oldest.get(provider, 0.0), age)
    for provider, age in oldest.items():
        metrics.PROVIDER_QUEUE_AGE.labels(provider).set(age)
    metrics.WEBHOOK_QUEUE_DEPTH.set(await db.scalar(_PENDING_DELIVERIES) or 0)
    return metrics.exposition()
