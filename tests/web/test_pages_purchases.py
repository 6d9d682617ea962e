"""The account page's purchases and balances, as a person reads them (over HTTP, without JavaScript).

Purchases go in through the same door the stores use (`apply_purchase_state`), balances through the
ledger's one writer (`balances.post`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.catalog import ProductType, parse_catalog
from entitle.core.models.accounts import Account
from entitle.core.models.entitlements import Subscription
from entitle.db.types import utcnow
from entitle.services.access import balances
from entitle.services.access.purchases import apply_purchase_state
from entitle.services.access.subscriptions import apply_subscription_state
from entitle.web.pages import bought, plans
from tests.factories import app_store_subscription, credits_purchase, one_time_purchase
from tests.providers.stripe.conftest import stripe_settings
from tests.standins.stripe import StripeStandin
from tests.web.test_pages import csrf_of, sign_up, subscribed

pytestmark = pytest.mark.usefixtures("pushed")


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    return stripe_settings(standin)


async def account_id_of(context: AppContext, email: str = "pat@example.com") -> uuid.UUID:
    async with context.database.sessionmaker() as db:
        found = await db.scalar(select(Account.id).where(Account.email == email))
    assert found is not None
    return found


def text_of(html: str, element_id: str) -> str:
    """The visible text of the element with this id, whitespace folded."""
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</(article|tr|p|div)>', html, re.S)
    assert found, element_id
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


async def test_the_account_page_lists_what_was_bought_and_the_balances(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    await sign_up(client)
    account_id = await account_id_of(context)
    bought_on = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)
    async with context.database.transaction() as db:
        await apply_purchase_state(db, one_time_purchase(account_id, purchased_at=bought_on))
        await apply_purchase_state(
            db, credits_purchase(account_id, quantity=2, purchased_at=bought_on + timedelta(days=1))
        )
        await balances.post(db, account_id, "credits", -30, reason="spend", source="api")

    page = await client.get("/account")
    assert page.status_code == 200
    # Newest first: the two packs of credits, then the lifetime unlock.
    packs, lifetime = text_of(page.text, "purchase-1"), text_of(page.text, "purchase-2")
    assert "100 credits" in packs and "March 15, 2026" in packs
    assert "Quantity 2" in packs and "200 Credits" in packs and "Refunded" not in packs
    assert "Pro, lifetime" in lifetime and "March 14, 2026" in lifetime and "the web (card)" in lifetime
    assert "For good (lifetime)" in lifetime
    # The catalog's name for the currency, and what is left after the spend.
    assert text_of(page.text, "balance-credits") == "Credits 170"
    assert 'id="negative-credits"' not in page.text
    # Owning Pro for good is a plan: the page does not offer one as if there were none.
    assert "You have no plan yet" not in page.text


async def test_a_refund_is_said_and_a_negative_balance_is_explained(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    await sign_up(client)
    account_id = await account_id_of(context)
    lifetime = one_time_purchase(account_id)
    pack = credits_purchase(account_id)
    async with context.database.transaction() as db:
        await apply_purchase_state(db, lifetime)
        await apply_purchase_state(db, pack)
        await balances.post(db, account_id, "credits", -80, reason="spend", source="api")
    refunded_at = utcnow()
    async with context.database.transaction() as db:
        for state in (lifetime, pack):
            await apply_purchase_state(
                db,
                replace(
                    state,
                    vendor_updated_at=state.vendor_updated_at + timedelta(seconds=1),
                    refunded_amount=state.amount or 0,
                    revoked_at=refunded_at,
                    revocation_reason="refunded",
                ),
            )

    page = await client.get("/account")
    lines = {text_of(page.text, f"purchase-{n}") for n in (1, 2)}
    [lifetime_line] = [line for line in lines if "Pro, lifetime" in line]
    [pack_line] = [line for line in lines if "100 credits" in line]
    assert "Refunded" in lifetime_line and "no longer gives access" in lifetime_line
    assert "For good" not in lifetime_line
    assert "Refunded" in pack_line and "taken back" in pack_line
    # 100 credited, 80 spent, 100 taken back by the refund.
    assert text_of(page.text, "balance-credits") == "Credits -80"
    explained = text_of(page.text, "negative-credits")
    assert "below zero" in explained and "refund" in explained
    assert "You have no plan yet" in page.text


async def test_the_newest_fifty_purchases_are_listed_and_the_rest_counted(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    await sign_up(client)
    account_id = await account_id_of(context)
    first = utcnow() - timedelta(days=60)
    async with context.database.transaction() as db:
        for n in range(52):
            await apply_purchase_state(
                db,
                credits_purchase(
                    account_id, store_purchase_id=f"tx-{n}", purchased_at=first + timedelta(days=n)
                ),
            )
    page = await client.get("/account")
    assert page.text.count('class="panel purchase"') == 50
    assert 'data-purchase-id="tx-51"' in page.text and 'data-purchase-id="tx-1"' not in page.text
    assert text_of(page.text, "older-purchases") == "And 2 older purchases, not shown here."
    assert text_of(page.text, "balance-credits") == "Credits 5,200"


async def test_a_pass_shows_until_when_it_lasts(client: httpx.AsyncClient, context: AppContext) -> None:
    await sign_up(client)
    account_id = await account_id_of(context)
    ends = datetime(2030, 1, 31, 12, tzinfo=UTC)
    async with context.database.transaction() as db:
        await apply_purchase_state(
            db,
            one_time_purchase(account_id, type=ProductType.NON_RENEWING, product=None, store_expires_at=ends),
        )
    page = await client.get("/account")
    assert "Until January 31, 2030" in text_of(page.text, "purchase-1")


async def test_a_subscription_beside_a_lifetime_purchase_is_pointed_out_with_its_cancel_button(
    client: httpx.AsyncClient, context: AppContext, standin: StripeStandin
) -> None:
    await subscribed(client, standin)
    account_id = await account_id_of(context)
    page = await client.get("/account")
    assert 'class="notice warn redundant"' not in page.text

    async with context.database.transaction() as db:
        await apply_purchase_state(db, one_time_purchase(account_id))
    page = await client.get("/account")
    said = text_of(page.text, "redundant-1")
    assert "You own Pro, lifetime" in said and "Cancel this subscription" in said
    [subscription_id] = re.findall(r'data-subscription-id="([^"]+)"', page.text)
    # The button is in the sentence itself, for that subscription.
    notice = page.text[page.text.index('id="redundant-1"') :]
    notice = notice[: notice.index("</div>")]
    assert 'action="/account/subscription/cancel"' in notice and subscription_id in notice

    canceled = await client.post(
        "/account/subscription/cancel",
        data={"csrf_token": csrf_of(page), "subscription_id": subscription_id},
    )
    assert canceled.headers["location"] == "/account?notice=canceled"
    async with context.database.sessionmaker() as db:
        row = await db.scalar(select(Subscription).where(Subscription.account_id == account_id))
    assert row is not None and row.will_renew is False
    after = await client.get("/account")
    # It no longer renews: nothing left to point out, and Pro stays (the lifetime purchase grants it).
    assert 'id="redundant-1"' not in after.text and "will not renew" in after.text
    assert "For good (lifetime)" in after.text


async def test_an_app_store_subscription_beside_a_lifetime_purchase_links_to_its_cancellation(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    await sign_up(client)
    account_id = await account_id_of(context)
    async with context.database.transaction() as db:
        await apply_subscription_state(db, app_store_subscription(account_id))
        await apply_purchase_state(db, one_time_purchase(account_id))
    page = await client.get("/account")
    notice = page.text[page.text.index('id="redundant-1"') :]
    notice = notice[: notice.index("</div>")]
    assert "You own Pro, lifetime" in notice
    assert re.search(
        r'<a class="button" href="https://apps\.apple\.com/[^"]+">Cancel in the App Store</a>', notice
    )


def test_only_a_lifetime_purchase_granting_everything_a_subscription_grants_makes_it_redundant() -> None:
    catalog = parse_catalog(PLAN_AND_ADD_ON_LIFETIME)
    now = utcnow()
    cards = plans.subscription_cards(
        catalog,
        {
            "subscriptions": [
                subscription_json("sub_both", "both_monthly"),
                subscription_json("sub_pro", "pro_monthly"),
                subscription_json("sub_pro_ending", "pro_monthly", will_renew=False),
            ]
        },
    )
    purchases = bought.purchase_lines(
        catalog,
        {
            "purchases": [
                {
                    "store": "stripe",
                    "id": "pi_1",
                    "product": "pro_lifetime",
                    "type": "non_consumable",
                    "quantity": 1,
                    "purchased_at": now.isoformat(),
                    "expires_at": None,
                    "refunded_at": None,
                }
            ]
        },
        now,
    )
    redundant = bought.redundant_subscriptions(catalog, cards, purchases)
    # Pro + Storage is not covered by Pro alone; one that already ends needs nothing done.
    assert set(redundant) == {"sub_pro"} and redundant["sub_pro"].product == "pro_lifetime"
    refunded = [replace(purchases[0], refunded_at=now.isoformat(), entitles=False)]
    assert bought.redundant_subscriptions(catalog, cards, refunded) == {}


PLAN_AND_ADD_ON_LIFETIME = """
[entitlements.pro]
[entitlements.storage]

[products.pro_monthly]
name = "Pro, monthly"
entitlements = ["pro"]
stripe = { lookup_key = "pro_monthly", unit_amount = 999, currency = "usd", interval = "month" }

[products.both_monthly]
name = "Pro and Storage, monthly"
entitlements = ["pro", "storage"]
stripe = { lookup_key = "both_monthly", unit_amount = 1499, currency = "usd", interval = "month" }

[products.pro_lifetime]
name = "Pro, lifetime"
type = "non_consumable"
entitlements = ["pro"]
stripe = { lookup_key = "pro_lifetime", unit_amount = 19999, currency = "usd" }
"""


def subscription_json(id: str, product: str, *, will_renew: bool = True) -> dict[str, Any]:
    """A live Stripe subscription as the answer body carries it."""
    return {
        "store": "stripe",
        "id": id,
        "product": product,
        "status": "active",
        "will_renew": will_renew,
        "current_period_end": (utcnow() + timedelta(days=30)).isoformat(),
        "grace_period_ends_at": None,
    }
