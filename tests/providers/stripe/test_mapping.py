"""Stripe subscription objects onto core states."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from entitle.core.catalog import Catalog, load_catalog
from entitle.core.subscriptions import Environment, Store, SubscriptionStatus
from entitle.providers.stripe.mapping import payment_method_summary, subscription_state

ACCOUNT = uuid.uuid4()
NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
# Stripe's own example objects, copied into the repository with their license (fixtures/LICENSE).
FIXTURES = Path(__file__).parent / "fixtures" / "fixtures3.json"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def make_sub(**overrides: Any) -> dict[str, Any]:
    """Stripe's own example subscription (fixtures3.json), made plausible for our catalog."""
    sub: dict[str, Any] = copy.deepcopy(json.loads(FIXTURES.read_text())["resources"]["subscription"])
    item = sub["items"]["data"][0]
    item["price"]["lookup_key"] = "pro_monthly"
    item["current_period_start"] = int((NOW - timedelta(days=10)).timestamp())
    item["current_period_end"] = int((NOW + timedelta(days=20)).timestamp())
    sub.update(status="active", cancel_at_period_end=False, cancel_at=None, pause_collection=None)
    sub.update(overrides)
    return sub


def state_of(sub: dict[str, Any], catalog: Catalog, **kw: Any) -> Any:
    return subscription_state(
        sub,
        account_id=ACCOUNT,
        catalog=catalog,
        read_at=kw.pop("read_at", NOW),
        grace_days=kw.pop("grace_days", 7),
        **kw,
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("active", SubscriptionStatus.ACTIVE),
        ("trialing", SubscriptionStatus.TRIALING),
        ("incomplete", SubscriptionStatus.INCOMPLETE),
        ("incomplete_expired", SubscriptionStatus.EXPIRED),
        ("unpaid", SubscriptionStatus.EXPIRED),
        ("canceled", SubscriptionStatus.EXPIRED),
        ("paused", SubscriptionStatus.PAUSED),
        ("something_new", SubscriptionStatus.EXPIRED),
    ],
)
def test_statuses(status: str, expected: SubscriptionStatus, catalog: Catalog) -> None:
    assert state_of(make_sub(status=status), catalog).status is expected


def test_the_fields_a_state_carries(catalog: Catalog) -> None:
    sub = make_sub()
    state = state_of(sub, catalog)
    assert state.store is Store.STRIPE and state.store_subscription_id == sub["id"]
    assert state.product == "pro_monthly" and state.store_product_id == sub["items"]["data"][0]["price"]["id"]
    assert state.current_period_end == datetime.fromtimestamp(
        sub["items"]["data"][0]["current_period_end"], UTC
    )
    assert state.environment is Environment.SANDBOX and state.will_renew is True
    assert state.vendor_updated_at == NOW and state.store_customer_id == sub["customer"]
    assert state_of(make_sub(livemode=True), catalog).environment is Environment.PRODUCTION


def test_past_due_grants_grace_from_the_unpaid_period_start(catalog: Catalog) -> None:
    sub = make_sub(status="past_due")
    start = datetime.fromtimestamp(sub["items"]["data"][0]["current_period_start"], UTC)
    inside = state_of(sub, catalog, read_at=start + timedelta(days=6))
    assert inside.status is SubscriptionStatus.IN_GRACE_PERIOD
    assert inside.grace_period_ends_at == start + timedelta(days=7)
    assert state_of(sub, catalog, read_at=start + timedelta(days=8)).status is SubscriptionStatus.PAST_DUE
    assert state_of(sub, catalog, grace_days=0).status is SubscriptionStatus.PAST_DUE


def test_canceling_at_period_end_still_entitles_but_does_not_renew(catalog: Catalog) -> None:
    state = state_of(make_sub(cancel_at_period_end=True), catalog)
    assert state.status is SubscriptionStatus.CANCELED_AT_PERIOD_END and not state.will_renew
    end = make_sub()["items"]["data"][0]["current_period_end"]
    assert state_of(make_sub(cancel_at=end), catalog).status is SubscriptionStatus.CANCELED_AT_PERIOD_END
    assert state_of(make_sub(cancel_at=end + 86400 * 90), catalog).status is SubscriptionStatus.ACTIVE


def test_paused_collection_keeps_access(catalog: Catalog) -> None:
    # Stripe: with collection paused the subscription stays active and "your customer retains
    # access to the service" (docs.stripe.com/billing/subscriptions/pause-payment); only status
    # `paused` (a paused subscription) stops access.
    for behavior in ("void", "keep_as_draft", "mark_uncollectible"):
        sub = make_sub(pause_collection={"behavior": behavior, "resumes_at": None})
        state = state_of(sub, catalog)
        assert (state.status, state.will_renew) == (SubscriptionStatus.ACTIVE, True)
    assert state_of(make_sub(status="paused"), catalog).status is SubscriptionStatus.PAUSED


def test_the_plan_item_decides_the_product_whatever_its_position(catalog: Catalog) -> None:
    sub = make_sub()
    plan = sub["items"]["data"][0]
    addon = copy.deepcopy(plan)
    addon["id"] = "si_addon"
    addon["price"] = {**addon["price"], "id": "price_addon", "lookup_key": None, "metadata": {}}
    sub["items"]["data"] = [addon, plan]
    state = state_of(sub, catalog)
    assert (state.product, state.store_product_id) == ("pro_monthly", plan["price"]["id"])


def test_refunded_ended_subscriptions_are_revoked(catalog: Catalog) -> None:
    assert state_of(make_sub(status="canceled"), catalog, refunded=True).status is SubscriptionStatus.REVOKED
    # A refund on a live subscription is Stripe's business: it still renews, so it still entitles.
    assert state_of(make_sub(), catalog, refunded=True).status is SubscriptionStatus.ACTIVE


def test_the_period_is_the_latest_item_end(catalog: Catalog) -> None:
    sub = make_sub()
    later = copy.deepcopy(sub["items"]["data"][0])
    later["current_period_end"] += 86400
    sub["items"]["data"].append(later)
    assert state_of(sub, catalog).current_period_end == datetime.fromtimestamp(
        later["current_period_end"], UTC
    )


def test_products_come_from_the_lookup_key_or_the_price_metadata(catalog: Catalog) -> None:
    sub = make_sub()
    price = sub["items"]["data"][0]["price"]
    price["lookup_key"] = None
    assert state_of(sub, catalog).product is None
    price["metadata"] = {"entitle_product": "pro_yearly"}
    assert state_of(sub, catalog).product == "pro_yearly"
    price["metadata"] = {"entitle_product": "not_in_catalog"}
    assert state_of(sub, catalog).product is None


def test_payment_method_summary() -> None:
    pm = json.loads(FIXTURES.read_text())["resources"]["payment_method"]
    assert payment_method_summary({"default_payment_method": pm}) == {
        "type": "card",
        "brand": "visa",
        "last4": "4242",
    }
    assert payment_method_summary({"default_payment_method": "pm_123"}) is None


def test_period_on_the_subscription_itself_still_reads(catalog: Catalog) -> None:
    """Objects shaped by API versions before 2025-03-31 keep the period on the subscription."""
    sub = make_sub()
    item = sub["items"]["data"][0]
    end = item.pop("current_period_end")
    sub["current_period_start"], sub["current_period_end"] = item.pop("current_period_start"), end
    state = state_of(sub, catalog)
    assert state.current_period_end == datetime.fromtimestamp(end, UTC)
    assert state.status is SubscriptionStatus.ACTIVE


def test_product_falls_back_to_what_checkout_wrote_on_the_subscription(catalog: Catalog) -> None:
    sub = make_sub(metadata={"account_id": str(ACCOUNT), "entitle_product": "pro_yearly"})
    sub["items"]["data"][0]["price"]["lookup_key"] = None
    assert state_of(sub, catalog).product == "pro_yearly"
    # The price's own lookup key wins when there is one (a plan change moves the price, not the metadata).
    sub["items"]["data"][0]["price"]["lookup_key"] = "pro_monthly"
    assert state_of(sub, catalog).product == "pro_monthly"
    sub["items"]["data"][0]["price"]["lookup_key"] = None
    sub["metadata"]["entitle_product"] = "not_in_the_catalog"
    assert state_of(sub, catalog).product is None
