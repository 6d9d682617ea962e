"""The alerts and outbound webhooks cards: their state from what is set, proven by a test message."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.models.events import WebhookEndpoint
from entitle.db.types import utcnow
from entitle.services.identity.operators import add_operator
from entitle.services.setup import alerts_setup, webhooks_setup
from entitle.services.setup.settings_cards import CARDS
from tests.factories import make_account
from tests.services.test_outbound import Receiver


@pytest.fixture
def chat() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def team() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def settings_overrides(chat: Receiver, team: Receiver) -> dict[str, Any]:
    return {"alert_webhook_url": chat.url, "team_channel_url": team.url, "team_channel_events": "refund"}


async def test_nothing_pasted_says_where_alerts_go_anyway(context: AppContext, db: AsyncSession) -> None:
    context.settings = context.settings.model_copy(
        update={"alert_webhook_url": None, "team_channel_url": None}
    )
    await make_account(db, email="ops@example.com")
    await add_operator(db, "ops@example.com", added_by="test")
    await db.commit()
    card = await CARDS["alerts"](db, context)
    assert card.state == "not_set"
    assert card.sentence.startswith("Alerts go to 1 operator by mail.")
    assert card.fields == ["alert_webhook_url", "team_channel_url", "team_channel_events"]


async def test_a_test_message_proves_each_url(
    context: AppContext, db: AsyncSession, chat: Receiver, team: Receiver
) -> None:
    card = await alerts_setup.card(db, context)
    assert card.state == "set" and "the team channel hears of refunds" in card.sentence
    results = await alerts_setup.send_test(context)
    assert [check.ok for check, _ in results] == [True, True]
    assert len(chat.received) == 1 and len(team.received) == 1
    card = await alerts_setup.card(db, context)
    assert card.state == "verified" and card.checked_at is not None
    assert "The chat webhook accepted the test message." in card.sentence


async def test_a_refusing_url_fails_with_its_own_words(
    context: AppContext, db: AsyncSession, chat: Receiver
) -> None:
    chat.answers = [404]
    results = await alerts_setup.send_test(context)
    assert [check.status for check, _ in results] == [404, 200]
    card = await alerts_setup.card(db, context)
    assert card.state == "failing"
    assert "The chat webhook refused the test message: it answered 404." in card.sentence
    assert chat.url not in card.sentence  # the URL is the channel's secret


async def test_the_webhooks_card_follows_the_delivery_log(
    context: AppContext, db: AsyncSession, chat: Receiver
) -> None:
    assert (await webhooks_setup.card(db, context)).state == "not_set"
    endpoint = WebhookEndpoint(url=chat.url, secret="whsec_" + "A" * 32, event_types=[])
    db.add(endpoint)
    await db.commit()
    card = await webhooks_setup.card(db, context)
    assert card.state == "set" and card.sentence.startswith("1 endpoint hears of account events")
    [delivery] = await webhooks_setup.send_tests(context)
    assert delivery.status == "delivered"
    assert (await webhooks_setup.card(db, context)).state == "verified"
    chat.answers = [500]
    await webhooks_setup.send_tests(context)
    card = await webhooks_setup.card(db, context)
    assert card.state == "failing" and "the endpoint answered 500" in card.sentence


async def test_an_endpoint_disabled_for_failures_is_failing(context: AppContext, db: AsyncSession) -> None:
    db.add(
        WebhookEndpoint(
            url="https://hooks.example.com/x",
            secret="whsec_AAAA",
            disabled_at=utcnow() - timedelta(days=1),
            disabled_reason="every retry of message msg_1 failed: the endpoint answered 500",
        )
    )
    await db.commit()
    card = await webhooks_setup.card(db, context)
    assert card.state == "failing" and "hooks.example.com/x was disabled" in card.sentence
