"""The paying browser claims with Google instead of a password: "Continue with Google" on the success page
comes back to it signed in, and the purchase moves at once (the Google address need not be the one typed
into Checkout: the cookie, not the address, is the proof)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.guest import GuestCheckout
from entitle.providers.stripe.catalog_push import push_catalog
from tests.providers.stripe.conftest import stripe_settings
from tests.standins.jwks_server import GOOGLE_WEB_CLIENT_ID, JwksStandin
from tests.standins.stripe import StripeStandin
from tests.web.test_pages_guest import pay_as_visitor
from tests.web.test_pages_web_signin import provider_page, submit


@pytest.fixture
def idp() -> Iterator[JwksStandin]:
    with JwksStandin() as standin:
        yield standin


@pytest.fixture
def settings_overrides(idp: JwksStandin, standin: StripeStandin) -> dict[str, Any]:
    return stripe_settings(standin) | {
        "guest_checkout": True,
        "google_client_ids": [GOOGLE_WEB_CLIENT_ID],
        "google_jwks_url": idp.url,
        "google_web_client_id": GOOGLE_WEB_CLIENT_ID,
        "google_auth_url": idp.authorize_url,
    }


@pytest.fixture(autouse=True)
async def pushed(context: AppContext) -> None:
    await push_catalog(context.providers["stripe"].gateway, context.catalog)


async def test_continue_with_google_on_the_success_page_claims_the_purchase(
    client: httpx.AsyncClient, standin: StripeStandin, context: AppContext, idp: JwksStandin
) -> None:
    session = await pay_as_visitor(client, standin, "typed-at-checkout@example.com", "pro_lifetime")
    success = f"/checkout/success?product=pro_lifetime&session_id={session['id']}"
    page = await client.get(success)
    assert 'data-state="create"' in page.text and "Continue with Google" in page.text
    start = page.text.split('href="/account/sign-in/google?', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    forms = await provider_page(client, "/account/sign-in/google?" + start)
    back = await submit(client, forms["Continue"])
    assert back.status_code == 303 and back.headers["location"] == success
    claimed = await client.get(back.headers["location"])
    assert claimed.status_code == 303 and claimed.headers["location"] == "/account?notice=claimed"
    account = await client.get(claimed.headers["location"])
    assert "pat@gmail.com" in account.text and "Pro, lifetime" in account.text
    async with context.database.sessionmaker() as db:
        row = await db.scalar(select(GuestCheckout))
    assert row is not None and row.status == "claimed" and row.claimed_by == "browser"
