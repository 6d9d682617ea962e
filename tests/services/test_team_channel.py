"""The team channel: the business's moments, a line each, switchable, retried, never a secret."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core import events, transitions
from entitle.db.types import utcnow
from entitle.services.delivery import team_channel
from entitle.services.delivery.team_channel import mask_email, tell_team
from tests.factories import make_account
from tests.services.test_outbound import Receiver

SUBSCRIPTION = {
    "store": "stripe",
    "product": "pro_monthly",
    "subscription_id": "sub_123",
    "expires_at": "2026-01-31T00:00:00+00:00",
    "status": "active",
    "will_renew": True,
    "environment": "production",
}


@pytest.fixture
def channel() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def settings_overrides(channel: Receiver) -> dict[str, Any]:
    return {"team_channel_url": channel.url}


def lines(channel: Receiver) -> list[str]:
    bodies = [json.loads(body) for body, _ in channel.received]
    assert all(set(body) == {"text"} for body in bodies)
    return [body["text"] for body in bodies]


async def later(context: AppContext) -> int:
    """A pass once the events are old enough to be read behind the cursor (events_feed.SETTLE)."""
    return await tell_team(context, now=utcnow() + timedelta(seconds=10))


async def moments(db: AsyncSession, email: str = "jane.doe@example.com") -> None:
    account = await make_account(db, email=email)
    await events.record_event(db, account.id, transitions.SUBSCRIPTION_STARTED, SUBSCRIPTION)
    await events.record_event(db, account.id, transitions.SUBSCRIPTION_RENEWED, SUBSCRIPTION)
    await events.record_event(db, account.id, transitions.SUBSCRIPTION_BILLING_ISSUE, SUBSCRIPTION)
    await events.record_event(
        db, account.id, transitions.SUBSCRIPTION_WILL_NOT_RENEW, {**SUBSCRIPTION, "will_renew": False}
    )
    refund = {"product": "credits_100", "amount": 499, "currency": "usd", "amount_refunded": 499}
    await events.record_event(db, account.id, events.PAYMENT_REFUNDED, {**refund, "store": "app_store"})
    await db.commit()


async def test_each_moment_is_one_line_with_the_email_masked(
    context: AppContext, db: AsyncSession, channel: Receiver
) -> None:
    assert await tell_team(context) == 0  # the first pass starts the cursor: history is not told
    await moments(db)
    assert await later(context) == 4
    assert lines(channel) == [
        "entitle: New subscriber: j\u2022\u2022\u2022@example.com started pro_monthly (Stripe)",
        "entitle: Billing problem: a renewal payment of pro_monthly by j\u2022\u2022\u2022@example.com "
        "failed (Stripe)",
        "entitle: Cancellation: j\u2022\u2022\u2022@example.com turned off renewal of pro_monthly (Stripe); "
        "it ends on 2026-01-31",
        "entitle: Refund: 4.99 USD to j\u2022\u2022\u2022@example.com for credits_100 (App Store)",
    ]
    text = " ".join(lines(channel))
    assert "jane.doe" not in text and "sub_123" not in text
    assert await later(context) == 0  # told once


async def test_moments_switched_off_are_not_told(
    context: AppContext, db: AsyncSession, channel: Receiver
) -> None:
    context.settings = context.settings.model_copy(
        update={"team_channel_events": ["refund", "new_subscriber"]}
    )
    await tell_team(context)
    await moments(db)
    assert await later(context) == 2
    assert [line.split(":")[1].strip() for line in lines(channel)] == ["New subscriber", "Refund"]


async def test_a_refusing_channel_is_retried_later_and_nothing_is_lost(
    context: AppContext, db: AsyncSession, channel: Receiver
) -> None:
    await tell_team(context)
    await moments(db)
    channel.answers = [500]
    now = utcnow() + timedelta(seconds=10)
    assert await tell_team(context, now=now) == 0
    assert await tell_team(context, now=now + timedelta(seconds=5)) == 0  # the retry is not due yet
    assert len(channel.received) == 1
    assert await tell_team(context, now=now + team_channel.FIRST_RETRY) == 4
    assert lines(channel)[0] == lines(channel)[1]  # the refused line, sent again, then the rest


def test_masking_keeps_the_first_letter_and_the_domain() -> None:
    assert mask_email("a@b.example") == "a\u2022\u2022\u2022@b.example"
    assert mask_email(None) == "an account without email"


async def test_a_channel_back_after_days_is_not_flooded_with_history(
    context: AppContext, db: AsyncSession, channel: Receiver
) -> None:
    await tell_team(context)
    await moments(db)
    assert await tell_team(context, now=utcnow() + team_channel.STALE + timedelta(minutes=1)) == 0
    assert channel.received == []
