"""What a one-time purchase is worth: entitlements for good or for its days, credits less refunds."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from entitle.core.catalog import ProductType, parse_catalog
from entitle.core.entitlements import compute_entitlements
from entitle.core.purchases import PurchaseState, credits_of, purchase_entitles, purchase_expires_at
from entitle.core.subscriptions import Environment, Store, SubscriptionState, SubscriptionStatus

CATALOG = parse_catalog(
    """
[entitlements.pro]

[currencies.credits]
name = "Credits"

[products.pro_monthly]
name = "Pro"
entitlements = ["pro"]
stripe = { lookup_key = "pro_monthly", unit_amount = 999, currency = "usd", interval = "month" }

[products.pro_lifetime]
name = "Pro, lifetime"
type = "non_consumable"
entitlements = ["pro"]
stripe = { lookup_key = "pro_lifetime", unit_amount = 19999, currency = "usd" }

[products.pass_week]
name = "A week"
type = "non_renewing"
entitlements = ["pro"]
duration_days = 7
app_store = { product_id = "pass.week" }

[products.credits_100]
name = "100 credits"
type = "consumable"
grants = { credits = 100 }
max_quantity = 10
stripe = { lookup_key = "credits_100", unit_amount = 500, currency = "usd" }
"""
)
NOW = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
ACCOUNT = uuid.uuid4()


def purchase(product: str, type: ProductType, **overrides: object) -> PurchaseState:
    fields: dict[str, object] = {
        "store": Store.STRIPE,
        "store_purchase_id": f"pi_{product}",
        "account_id": ACCOUNT,
        "product": product,
        "store_product_id": product,
        "type": type,
        "quantity": 1,
        "purchased_at": NOW - timedelta(days=1),
        "environment": Environment.SANDBOX,
        "vendor_updated_at": NOW - timedelta(days=1),
        "amount": 500,
        "currency": "usd",
    }
    fields.update(overrides)
    return PurchaseState(**fields)  # type: ignore[arg-type]


def test_a_lifetime_unlock_entitles_for_good_until_refunded() -> None:
    lifetime = purchase("pro_lifetime", ProductType.NON_CONSUMABLE)
    answer = compute_entitlements([], [], CATALOG, NOW, public_url="https://x", purchases=[lifetime])["pro"]
    assert answer.active and answer.source == "purchase" and answer.expires_at is None
    assert answer.to_json()["source"] == "purchase" and answer.to_json()["expires_at"] is None
    assert answer.management_url is None and answer.recheck_at is None

    refunded = replace(lifetime, revoked_at=NOW - timedelta(hours=1), revocation_reason="refunded")
    answer = compute_entitlements([], [], CATALOG, NOW, public_url="https://x", purchases=[refunded])["pro"]
    assert not answer.active


def test_a_pass_lasts_its_days_from_the_purchase() -> None:
    week = purchase("pass_week", ProductType.NON_RENEWING, purchased_at=NOW - timedelta(days=6))
    assert purchase_expires_at(week, CATALOG) == NOW + timedelta(days=1)
    answer = compute_entitlements([], [], CATALOG, NOW, public_url="https://x", purchases=[week])["pro"]
    assert answer.active and answer.expires_at == NOW + timedelta(days=1)
    assert answer.recheck_at == NOW + timedelta(days=1)
    assert not purchase_entitles(week, CATALOG, NOW + timedelta(days=1))


def test_a_lifetime_unlock_beside_a_subscription_is_reported_and_the_subscription_flagged() -> None:
    subscription = SubscriptionState(
        store=Store.STRIPE,
        store_subscription_id="sub_1",
        account_id=ACCOUNT,
        product="pro_monthly",
        store_product_id="price_1",
        status=SubscriptionStatus.ACTIVE,
        current_period_end=NOW + timedelta(days=20),
        will_renew=True,
        environment=Environment.SANDBOX,
        vendor_updated_at=NOW,
    )
    lifetime = purchase("pro_lifetime", ProductType.NON_CONSUMABLE)
    answer = compute_entitlements(
        [subscription], [], CATALOG, NOW, public_url="https://x", purchases=[lifetime]
    )["pro"]
    assert answer.source == "purchase" and answer.source_id == "pi_pro_lifetime"
    assert [ref.store_subscription_id for ref in answer.duplicate_subscriptions] == ["sub_1"]
    alone = compute_entitlements([subscription], [], CATALOG, NOW, public_url="https://x")["pro"]
    assert alone.source == "subscription" and alone.duplicate_subscriptions == ()


def test_a_consumable_grants_credits_times_quantity_and_no_entitlement() -> None:
    pack = purchase("credits_100", ProductType.CONSUMABLE, quantity=3, amount=1500)
    assert credits_of(pack, CATALOG) == {"credits": 300}
    assert not purchase_entitles(pack, CATALOG, NOW)
    answer = compute_entitlements([], [], CATALOG, NOW, public_url="https://x", purchases=[pack])["pro"]
    assert not answer.active


def test_refunds_take_back_their_share_and_a_full_refund_all_of_it() -> None:
    pack = purchase("credits_100", ProductType.CONSUMABLE, quantity=3, amount=1500)
    assert credits_of(replace(pack, refunded_amount=500), CATALOG) == {"credits": 200}
    # A cent back never costs a whole credit: the share taken is rounded down.
    assert credits_of(replace(pack, refunded_amount=1), CATALOG) == {"credits": 300}
    assert credits_of(replace(pack, refunded_amount=1500, revoked_at=NOW), CATALOG) == {"credits": 0}
    assert credits_of(purchase("pro_lifetime", ProductType.NON_CONSUMABLE), CATALOG) == {}
    assert credits_of(replace(pack, product="gone"), CATALOG) == {}


@given(st.integers(1, 10), st.integers(1, 100_000), st.integers(0, 100_000))
def test_credits_never_exceed_the_pack_or_go_below_zero(quantity: int, amount: int, refunded: int) -> None:
    pack = purchase("credits_100", ProductType.CONSUMABLE, quantity=quantity, amount=amount)
    worth = credits_of(replace(pack, refunded_amount=refunded), CATALOG)["credits"]
    assert 0 <= worth <= 100 * quantity
    if refunded >= amount:
        assert worth == 0
