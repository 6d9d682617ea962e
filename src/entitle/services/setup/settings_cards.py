"""The cards the settings alone decide (`not_set` / `set`), one `card` function per integration.

The integrations' own checks (services/setup/*_setup.py) replace these with cards that prove the keys work;
until then each says plainly what is pasted and what is missing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from entitle.services.setup import alerts_setup, stripe_setup, webhooks_setup
from entitle.services.setup.cards import Card, settings_card

if TYPE_CHECKING:
    from entitle.context import AppContext

CardSource = Callable[[AsyncSession, "AppContext"], Awaitable[Card]]


async def stripe(db: AsyncSession, context: AppContext) -> Card:
    key = context.settings.stripe_secret_key
    mode = "live" if key and key.get_secret_value().startswith(("sk_live_", "rk_live_")) else "test"
    return settings_card(
        context,
        key="stripe",
        title="Stripe",
        fields=["stripe_secret_key", "stripe_publishable_key", "stripe_webhook_secret"],
        required=["stripe_secret_key", "stripe_publishable_key"],
        set_sentence=f"Keys saved ({mode} mode); web payments use them.",
        not_set_sentence=(
            "Paste the secret and publishable keys from the Stripe dashboard (Developers, API keys)."
        ),
    )


async def app_store(db: AsyncSession, context: AppContext) -> Card:
    return settings_card(
        context,
        key="app_store",
        title="App Store",
        fields=[
            "apple_bundle_id",
            "apple_app_id",
            "apple_issuer_id",
            "apple_key_id",
            "apple_private_key",
        ],
        required=["apple_bundle_id"],
        set_sentence="The app's bundle id is set; App Store purchases are verified against Apple's roots.",
        not_set_sentence="Give the app's bundle id (and its Apple id for Production purchases).",
    )


async def apple_signin(db: AsyncSession, context: AppContext) -> Card:
    return settings_card(
        context,
        key="apple_signin",
        title="Sign in with Apple",
        fields=[
            "apple_signin_client_ids",
            "apple_signin_web_client_id",
            "apple_signin_team_id",
            "apple_signin_key_id",
            "apple_signin_private_key",
        ],
        required=["apple_signin_client_ids"],
        set_sentence="Sign in with Apple is offered to the apps whose ids are listed.",
        not_set_sentence="List the app's bundle id (and the web's Services ID) to offer Sign in with Apple.",
    )


async def google_signin(db: AsyncSession, context: AppContext) -> Card:
    return settings_card(
        context,
        key="google_signin",
        title="Google sign-in",
        fields=["google_client_ids", "google_web_client_id"],
        required=["google_client_ids"],
        set_sentence="Google sign-in is offered to the clients whose ids are listed.",
        not_set_sentence="List the OAuth client ids (iOS, web) from the Google Cloud console.",
    )


async def mail(db: AsyncSession, context: AppContext) -> Card:
    return settings_card(
        context,
        key="mail",
        title="Mail",
        fields=["smtp_url", "email_from"],
        required=["smtp_url"],
        set_sentence=f"Mail goes out through the SMTP server, from {context.settings.email_from}.",
        not_set_sentence="Give an SMTP server (smtp://user:pass@host:587); until then mails are only logged.",
    )


# The cards on /admin/setup, in the order shown.
CARDS: dict[str, CardSource] = {
    "stripe": stripe_setup.card,
    "app_store": app_store,
    "apple_signin": apple_signin,
    "google_signin": google_signin,
    "mail": mail,
    # Proven by their own checks (services/setup/webhooks_setup.py, alerts_setup.py).
    "webhooks": webhooks_setup.card,
    "alerts": alerts_setup.card,
}
