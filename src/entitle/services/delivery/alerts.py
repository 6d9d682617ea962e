"""Operator alerts to `ENTITLE_ALERT_WEBHOOK_URL` (Slack-compatible `{"text": ...}`).

Three causes: a provider event or an outbound delivery that has failed several times, an outbound
endpoint disabled because it kept failing, and a sync that found drift (stored state that differed
from the store's). The worker looks for the first two on every pass (`check`); the sync commands
report the third. Each cause alerts at most once an hour: the claim on a cause is one conditional
UPDATE on `alerts_sent`, so several workers never double an alert, and what was held back is counted
into the next one. Without a URL, alerts are only logged.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import httpx
from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from entitle import metrics
from entitle.core.models.events import (
    AlertSent,
    DeliveryStatus,
    InboxStatus,
    ProviderEvent,
    WebhookDelivery,
    WebhookEndpoint,
)
from entitle.db.engine import Database
from entitle.services.delivery.mail import queue_mail
from entitle.services.identity.operators import list_operators

if TYPE_CHECKING:
    from entitle.context import AppContext
from entitle.db.types import utcnow

log = logging.getLogger(__name__)

# The mail's subject names the kind of cause in words.
HEADLINES = {
    "provider_event_failed": "store events keep failing",
    "delivery_failing": "webhook deliveries keep failing",
    "endpoint_disabled": "a webhook endpoint was disabled",
    "sync_drift": "a sync found drift",
}

# An event or a delivery is worth a person's attention once it has failed this many times.
ALERT_AFTER_FAILURES = 3
QUIET_PERIOD = timedelta(hours=1)

_ALERTS = cast(Table, AlertSent.__table__)
INSERT_IGNORE: dict[str, Any] = {
    "postgresql": pg_insert(_ALERTS).on_conflict_do_nothing(index_elements=["cause"]),
    "sqlite": sqlite_insert(_ALERTS).on_conflict_do_nothing(index_elements=["cause"]),
}


def alerter(context: AppContext) -> Alerter:
    url = context.settings.alert_webhook_url
    return Alerter(context.database, context.http, url.get_secret_value() if url else None)


class Alerter:
    def __init__(self, database: Database, http: httpx.AsyncClient, url: str | None) -> None:
        self.database = database
        self.http = http
        self.url = url

    async def alert(self, cause: str, text: str, *, now: datetime | None = None) -> bool:
        """Send `text` unless `cause` alerted within the hour; True when it was sent (or logged)."""
        now = now or utcnow()
        kind = cause.split(":", 1)[0]
        async with self.database.transaction() as db:
            connection = await db.connection()
            await connection.execute(
                INSERT_IGNORE[connection.dialect.name],
                {"cause": cause, "last_sent_at": now - 2 * QUIET_PERIOD, "suppressed": 0},
            )
            # The count held back is read before the claim resets it (approximate under races: fine).
            held_back = await connection.scalar(select(_ALERTS.c.suppressed).where(_ALERTS.c.cause == cause))
            claimed = (
                await connection.execute(
                    update(_ALERTS)
                    .where(_ALERTS.c.cause == cause, _ALERTS.c.last_sent_at <= now - QUIET_PERIOD)
                    .values(last_sent_at=now, suppressed=0)
                    .returning(_ALERTS.c.cause)
                )
            ).first()
            if claimed is None:
                await connection.execute(
                    update(_ALERTS)
                    .where(_ALERTS.c.cause == cause)
                    .values(suppressed=_ALERTS.c.suppressed + 1)
                )
                metrics.ALERTS.labels(kind, "no").inc()
                return False
            if held_back:
                text += f" ({held_back} more alert(s) for this held back in the last hour)"
            await _mail_operators(db, kind, text)
        metrics.ALERTS.labels(kind, "yes").inc()
        log.warning("alert [%s]: %s", cause, text)
        if self.url:
            try:
                response = await self.http.post(self.url, json={"text": f"entitle: {text}"}, timeout=10)
                response.raise_for_status()
            except httpx.HTTPError as exc:
                log.error("the alert webhook refused [%s]: %s", cause, exc.__class__.__name__)
        return True

    async def check(self, *, now: datetime | None = None) -> int:
        """Alert for what is failing right now; returns how many alerts went out."""
        now = now or utcnow()
        sent = 0
        for cause, text in await self._failing(now):
            sent += int(await self.alert(cause, text, now=now))
        return sent

    async def _failing(self, now: datetime) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        async with self.database.sessionmaker() as db:
            events = await db.execute(
                select(ProviderEvent.provider, func.count(), func.max(ProviderEvent.last_error))
                .where(
                    ProviderEvent.status == InboxStatus.FAILED,
                    ProviderEvent.attempts >= ALERT_AFTER_FAILURES,
                )
                .group_by(ProviderEvent.provider)
            )
            for provider, count, error in events.all():
                found.append(
                    (
                        f"provider_event_failed:{provider}",
                        f"{count} {provider} event(s) failed {ALERT_AFTER_FAILURES}+ times; "
                        f"last error: {_last_line(error)}",
                    )
                )
            deliveries = await db.execute(
                select(WebhookEndpoint.id, WebhookEndpoint.url, func.count())
                .join(WebhookDelivery, WebhookDelivery.endpoint_id == WebhookEndpoint.id)
                .where(
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                    WebhookDelivery.attempts >= ALERT_AFTER_FAILURES,
                    WebhookEndpoint.disabled_at.is_(None),
                )
                .group_by(WebhookEndpoint.id, WebhookEndpoint.url)
            )
            for endpoint_id, url, count in deliveries.all():
                found.append(
                    (
                        f"delivery_failing:{endpoint_id}",
                        f"{count} webhook delivery(ies) to {url} failed {ALERT_AFTER_FAILURES}+ times",
                    )
                )
            disabled = await db.execute(
                select(WebhookEndpoint.id, WebhookEndpoint.url, WebhookEndpoint.disabled_reason).where(
                    WebhookEndpoint.disabled_at >= now - QUIET_PERIOD,
                    WebhookEndpoint.disabled_reason.startswith("every retry"),
                )
            )
            for endpoint_id, url, reason in disabled.all():
                found.append(
                    (f"endpoint_disabled:{endpoint_id}", f"webhook endpoint {url} was disabled: {reason}")
                )
        return found

    async def sync_drift(self, store: str, detail: str) -> bool:
        """A sync found stored state that differed from the store's: something was missed."""
        return await self.alert(f"sync_drift:{store}", f"entitle sync {store} found drift: {detail}")


async def _mail_operators(db: AsyncSession, kind: str, text: str) -> None:
    headline = HEADLINES.get(kind, "an alert")
    for operator, _ in await list_operators(db):
        if operator.email and not operator.is_deleted:
            data = {"headline": headline, "text": f"{text}."}
            await queue_mail(
                db, to=operator.email, template="operator_alert", account_id=operator.id, data=data
            )


def _last_line(error: str | None) -> str:
    lines = (error or "").strip().splitlines()
    return lines[-1][:300] if lines else "(none recorded)"
