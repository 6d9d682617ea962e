"""The cards the settings alone decide: not set until what an integration needs is pasted, then set."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.services.setup import settings_cards
from entitle.services.setup.runtime_settings import RUNTIME_SETTINGS, reload_settings, save_settings
from entitle.services.setup.settings_cards import CARDS


async def test_every_card_starts_not_set_and_asks_only_for_runtime_settings(
    db: AsyncSession, context: AppContext
) -> None:
    cards = [await source(db, context) for source in CARDS.values()]
    assert [card.key for card in cards] == [
        "stripe",
        "app_store",
        "apple_signin",
        "google_signin",
        "mail",
        "webhooks",
        "alerts",
    ]
    assert {card.state for card in cards} == {"not_set"}
    assert all(set(card.fields) <= set(RUNTIME_SETTINGS) for card in cards)


async def test_a_card_is_set_once_its_settings_are_saved(db: AsyncSession, context: AppContext) -> None:
    async with context.database.transaction() as writer:
        await save_settings(
            writer,
            context,
            {
                "stripe_secret_key": "sk_live_" + "k" * 24,
                "stripe_publishable_key": "pk_live_abc",
                "alert_webhook_url": "https://hooks.example.com/services/T0/B0/x",
            },
            by="test",
        )
    await reload_settings(context)
    # The settings-only Stripe card (the page shows the proving one, tested in test_stripe_setup.py).
    stripe = await settings_cards.stripe(db, context)
    assert stripe.state == "set" and "live mode" in stripe.sentence
    assert (await CARDS["alerts"](db, context)).state == "set"
    assert (await CARDS["mail"](db, context)).state == "not_set"
