"""Fixtures for Stripe tests: the local stand-in, settings pointing at it, and small helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.models.accounts import Account
from entitle.providers.stripe.catalog_push import push_catalog
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.billing import billing_stripe
from tests.factories import make_account
from tests.standins.stripe import StripeStandin

# A second, older secret: the endpoint must accept either while a secret is being rotated.
ROTATED_SECRET = "whsec_previous_secret_0123456789abcdef"


@pytest.fixture
def standin() -> Iterator[StripeStandin]:
    with StripeStandin() as running:
        yield running


def stripe_settings(standin: StripeStandin) -> dict[str, Any]:
    """Settings that point entitle at `standin`."""
    return {
        "stripe_secret_key": standin.secret_key,
        "stripe_api_base": standin.base_url,
        "stripe_webhook_secret": f"{ROTATED_SECRET},{standin.webhook_secret}",
        "stripe_grace_days": 7,
    }


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    return stripe_settings(standin)


@pytest.fixture
def stripe_provider(context: AppContext) -> StripeProvider:
    provider: StripeProvider = context.providers["stripe"]
    return provider


@pytest.fixture
async def pushed(context: AppContext, stripe_provider: StripeProvider) -> AsyncIterator[None]:
    """The sample catalog's products and prices exist at the stand-in."""
    await push_catalog(stripe_provider.gateway, context.catalog)
    yield


async def deliver(
    http: httpx.AsyncClient, standin: StripeStandin, event: dict[str, Any], **signing: Any
) -> httpx.Response:
    """POST one event to /webhooks/stripe, signed as Stripe signs it."""
    body, headers = standin.signed(event, **signing)
    return await http.post("/webhooks/stripe", content=body, headers=headers)


async def deliver_all(http: httpx.AsyncClient, standin: StripeStandin, since: int = 0) -> None:
    """POST every event the stand-in has emitted since `since`, in order; each must be accepted."""
    for event in standin.events.log[since:]:
        assert (await deliver(http, standin, event)).status_code == 200


async def paid_checkout(
    db: AsyncSession, provider: StripeProvider, standin: StripeStandin, email: str
) -> tuple[Account, str]:
    """An account that paid on hosted Checkout at the stand-in (its events not yet delivered)."""
    account = await make_account(db, email=email)
    session = await billing_stripe.start_checkout(
        db, provider, account, "pro_monthly", success_url=None, cancel_url=None
    )
    await db.commit()
    standin.complete_checkout(session["id"])
    return account, str(standin.state.get(session["id"], "checkout.session")["subscription"])
