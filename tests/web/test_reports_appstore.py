"""App Store revenue in GET /v1/reports/summary and /admin/reports: each transaction's own price and
currency, normalized to a month, production and the Sandbox apart.

The transactions are signed by the test chain and posted by the iPhone app's own route, as in
tests/web/test_billing_appstore.py, so the report reads what the App Store provider stores.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from entitle.context import AppContext
from entitle.services.identity import operators
from tests.conftest import ADMIN_KEY
from tests.factories import DEFAULT_PASSWORD, bearer, make_account, register
from tests.standins.appstore import AppStoreSigner, SigningChain, ms
from tests.standins.appstore import fixtures as appstore_fixtures
from tests.standins.appstore.fixtures import APP_APPLE_ID, BUNDLE_ID, MONTHLY, YEARLY, appstore_settings
from tests.web.test_pages import post_form

appstore_chain = appstore_fixtures.appstore_chain
appstore_root_path = appstore_fixtures.appstore_root_path

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PATH = "/v1/reports/summary"


@pytest.fixture
def settings_overrides(appstore_root_path: Path) -> dict[str, Any]:
    return appstore_settings(appstore_root_path)


def signer(chain: SigningChain, environment: str) -> AppStoreSigner:
    return AppStoreSigner(chain, bundle_id=BUNDLE_ID, app_apple_id=APP_APPLE_ID, environment=environment)


async def bought(
    client: httpx.AsyncClient,
    chain: SigningChain,
    email: str,
    *,
    environment: str = "Production",
    product: str = MONTHLY,
    period: dt.timedelta,
    price: int,
    currency: str,
    **fields: Any,
) -> None:
    """An account that bought `product` a minute ago for `price` (milli-units) covering `period`."""
    session = await register(client, email)
    now = dt.datetime.now(dt.UTC)
    purchased = now - dt.timedelta(minutes=1)
    store = signer(chain, environment)
    original = str(uuid.uuid4().int)[:16]
    transaction = store.transaction(
        original_transaction_id=original,
        transaction_id=original,
        product_id=product,
        purchase_date=ms(purchased),
        expires_date=ms(purchased + period),
        signed_date=ms(purchased),
        app_account_token=session["account"]["app_account_token"],
        price=price,
        currency=currency,
        **fields,
    )
    answer = await client.post(
        "/v1/billing/appstore/transactions",
        json={"signed_transaction": store.sign(transaction)},
        headers=bearer(session),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["entitlements"]["pro"]["active"] is True


async def test_app_store_mrr_counts_each_transactions_own_price_and_keeps_the_sandbox_apart(
    client: httpx.AsyncClient, appstore_chain: SigningChain
) -> None:
    # 9.99 USD a month (a 31-day month) and 99.99 USD a year: 999 + 9,999 / 12 = 1,832.25 cents.
    await bought(
        client,
        appstore_chain,
        "monthly@example.com",
        period=dt.timedelta(days=31),
        price=9990,
        currency="USD",
    )
    await bought(
        client,
        appstore_chain,
        "yearly@example.com",
        product=YEARLY,
        period=dt.timedelta(days=365),
        price=99990,
        currency="USD",
    )
    # ¥1,200 a month: the yen has no minor unit, so 1,200 and not 120,000.
    await bought(
        client,
        appstore_chain,
        "tokyo@example.com",
        period=dt.timedelta(days=30),
        price=1200000,
        currency="JPY",
    )
    # A 3-month plan at 14.99 EUR: 499.67 cents a month.
    await bought(
        client, appstore_chain, "paris@example.com", period=dt.timedelta(days=92), price=14990, currency="EUR"
    )
    # The Sandbox renews a month every five minutes; its 4.99 USD is not real money.
    await bought(
        client,
        appstore_chain,
        "tester@example.com",
        environment="Sandbox",
        period=dt.timedelta(minutes=5),
        price=4990,
        currency="USD",
    )

    production = await client.get(PATH, headers=ADMIN)
    assert production.status_code == 200, production.text
    body = production.json()
    assert body["environment"] == "production"
    assert body["mrr"] == {"eur": 500, "jpy": 1200, "usd": 1832}
    assert body["mrr_unpriced"] == {"stripe": 0, "app_store": 0}
    assert body["active"]["by_store"] == {"stripe": 0, "app_store": 4}
    assert body["totals"]["new"] == 4

    sandbox = await client.get(PATH, params={"environment": "sandbox"}, headers=ADMIN)
    assert sandbox.status_code == 200, sandbox.text
    body = sandbox.json()
    assert body["environment"] == "sandbox"
    assert body["mrr"] == {"usd": 499}
    assert body["active"]["by_store"] == {"stripe": 0, "app_store": 1}
    assert body["totals"]["new"] == 1

    wrong = await client.get(PATH, params={"environment": "staging"}, headers=ADMIN)
    assert wrong.status_code == 422


async def test_a_family_member_and_a_transaction_without_a_price(
    client: httpx.AsyncClient, appstore_chain: SigningChain
) -> None:
    # The organizer pays; the family member's shared access is not a second payment.
    await bought(
        client,
        appstore_chain,
        "organizer@example.com",
        period=dt.timedelta(days=30),
        price=9990,
        currency="USD",
    )
    await bought(
        client,
        appstore_chain,
        "child@example.com",
        period=dt.timedelta(days=30),
        price=9990,
        currency="USD",
        inAppOwnershipType="FAMILY_SHARED",
    )
    # Transactions from before Apple signed prices carry none: counted, not given a price nobody set.
    await bought(
        client, appstore_chain, "old@example.com", period=dt.timedelta(days=30), price=None, currency=None
    )
    body = (await client.get(PATH, headers=ADMIN)).json()
    assert body["mrr"]["usd"] == 999
    assert body["mrr_unpriced"] == {"stripe": 0, "app_store": 1}
    assert body["active"]["by_store"]["app_store"] == 3


async def test_the_dashboard_shows_production_and_switches_to_the_sandbox(
    client: httpx.AsyncClient, appstore_chain: SigningChain, context: AppContext
) -> None:
    await bought(
        client, appstore_chain, "paying@example.com", period=dt.timedelta(days=30), price=9990, currency="USD"
    )
    await bought(
        client,
        appstore_chain,
        "tester@example.com",
        environment="Sandbox",
        period=dt.timedelta(minutes=5),
        price=2990,
        currency="USD",
    )
    async with context.database.sessionmaker() as db:
        await make_account(db, email="ops@example.com")
        await operators.add_operator(db, "ops@example.com", added_by="cli:test")
        await db.commit()
    signed_in = await post_form(
        client,
        "/account/sign-in",
        "/account/sign-in",
        {"email": "ops@example.com", "password": DEFAULT_PASSWORD},
    )
    assert signed_in.status_code == 303, signed_in.text

    production = await client.get("/admin/reports")
    assert production.status_code == 200, production.text
    assert 'id="report-environment">· Production' in production.text
    assert 'id="mrr-usd">$9.99<' in production.text
    sandbox = await client.get("/admin/reports?environment=sandbox")
    assert 'id="report-environment">· Sandbox' in sandbox.text
    assert 'id="mrr-usd">$2.99<' in sandbox.text
    assert "environment=sandbox" in sandbox.text
