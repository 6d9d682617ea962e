"""Operator alerts: failing events, a disabled endpoint, sync drift; at most one per cause per hour."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.app import run_background_work
from entitle.context import AppContext
from entitle.core.models.events import InboxStatus, ProviderEvent, WebhookEndpoint
from entitle.core.models.mail import OutboundMail
from entitle.db.types import utcnow
from entitle.services.delivery.alerts import ALERT_AFTER_FAILURES, Alerter
from entitle.services.delivery.mail import render
from entitle.services.identity.operators import add_operator
from tests.factories import make_account
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


async def operator_mail(context: AppContext) -> list[OutboundMail]:
    async with context.database.sessionmaker() as db:
        rows = await db.scalars(
            select(OutboundMail).where(OutboundMail.template == "operator_alert").order_by(OutboundMail.to)
        )
        return list(rows)


async def test_an_alert_is_mailed_to_every_operator_once_per_claim(
    context: AppContext, db: AsyncSession, alerts: Alerter, slack: Receiver
) -> None:
    for email in ("ops@example.com", "owner@example.com"):
        await make_account(db, email=email)
        await add_operator(db, email, added_by="test")
    await make_account(db, email="customer@example.com")
    await db.commit()
    await failing_event(context, attempts=ALERT_AFTER_FAILURES)
    assert await alerts.check() == 1
    assert await alerts.check() == 0  # held back: no second mail either
    mails = await operator_mail(context)
    assert [mail.to for mail in mails] == ["ops@example.com", "owner@example.com"]
    message = render(mails[0].template, mails[0].data, context.settings)
    assert message["Subject"] == "entitle needs attention: store events keep failing"
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "Stripe did not answer" in text and f"{context.settings.public_url}/admin" in text
    # The alert URL heard the same alert.
    assert len(texts(slack)) == 1


async def test_without_an_alert_url_operators_still_get_the_mail(
    context: AppContext, db: AsyncSession
) -> None:
    await make_account(db, email="ops@example.com")
    await add_operator(db, "ops@example.com", added_by="test")
    await db.commit()
    async with httpx.AsyncClient() as http:
        assert await Alerter(context.database, http, None).sync_drift("stripe", "1 changed") is True
    [mail] = await operator_mail(context)
    assert mail.data["headline"] == "a sync found drift" and "1 changed" in mail.data["text"]
