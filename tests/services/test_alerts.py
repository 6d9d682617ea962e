"""Operator alerts: failing events, a disabled endpoint, sync drift; at most one per cause per hour."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from entitle.app import run_background_work
from entitle.context import AppContext
from entitle.core.models.events import InboxStatus, ProviderEvent, WebhookEndpoint
from entitle.db.types import utcnow
from entitle.services.delivery.alerts import ALERT_AFTER_FAILURES, Alerter
from tests.services.test_outbound import Receiver


@pytest.fixture
def slack() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def settings_overrides(slack: Receiver) -> dict[str, Any]:
    return {"alert_webhook_url": slack.url}


@pytest.fixture
async def alerts(context: AppContext, slack: Receiver) -> AsyncIterator[Alerter]:
    async with httpx.AsyncClient() as http:
        yield Alerter(context.database, http, slack.url)


def texts(slack: Receiver) -> list[str]:
    return [json.loads(body)["text"] for body, _ in slack.received]


async def failing_event(context: AppContext, attempts: int) -> None:
    async with context.database.transaction() as db:
        db.add(
            ProviderEvent(
                provider="stripe",
                event_id=f"evt_{uuid.uuid4().hex}",
                type="customer.subscription.updated",
                raw_body=b"{}",
                status=InboxStatus.FAILED,
                attempts=attempts,
                last_error="Traceback...\nProviderUnavailable: Stripe did not answer",
                next_attempt_at=utcnow() + timedelta(minutes=5),
            )
        )


async def test_an_event_failing_several_times_alerts_once_an_hour(
    context: AppContext, alerts: Alerter, slack: Receiver
) -> None:
    await failing_event(context, attempts=ALERT_AFTER_FAILURES - 1)
    assert await alerts.check() == 0  # one or two failures are the retry's business
    await failing_event(context, attempts=ALERT_AFTER_FAILURES)
    assert await alerts.check() == 1
    [text] = texts(slack)
    assert "stripe" in text and "Stripe did not answer" in text
    now = utcnow()
    for minutes in (1, 30, 59):
        assert await alerts.check(now=now + timedelta(minutes=minutes)) == 0
    assert await alerts.check(now=now + timedelta(minutes=61)) == 1
    assert "3 more alert(s) for this held back" in texts(slack)[-1]


async def test_a_disabled_endpoint_and_sync_drift_alert(
    context: AppContext, alerts: Alerter, slack: Receiver
) -> None:
    async with context.database.transaction() as db:
        db.add(
            WebhookEndpoint(
                url="https://hooks.example.com/x",
                secret="whsec_AAAA",
                disabled_at=utcnow(),
                disabled_reason="every retry of message msg_1 failed: the endpoint answered 500",
            )
        )
        db.add(
            WebhookEndpoint(
                url="https://gone.example.com/x",
                secret="whsec_AAAA",
                disabled_at=utcnow(),
                disabled_reason="deleted through the API",
            )
        )
    assert await alerts.check() == 1
    assert "hooks.example.com" in texts(slack)[0] and "disabled" in texts(slack)[0]
    assert await alerts.sync_drift("stripe", "2 changed (active -> expired: 2)") is True
    assert await alerts.sync_drift("stripe", "1 changed") is False
    assert await alerts.sync_drift("app_store", "1 missed notification(s)") is True
    assert [t.split(":")[0] for t in texts(slack)] == ["entitle", "entitle", "entitle"]
    assert "sync stripe found drift" in texts(slack)[1]


async def test_the_worker_alerts_through_the_configured_url(context: AppContext, slack: Receiver) -> None:
    await failing_event(context, attempts=ALERT_AFTER_FAILURES + 2)
    await run_background_work(context, once=True)
    await run_background_work(context, once=True)  # the same cause within the hour: held back
    assert len(texts(slack)) == 1 and "failed 3+ times" in texts(slack)[0]
