"""An account with several Stripe subscriptions (a plan and an add-on): every self-service action names
the one it acts on, and acts on that one only."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.entitlements import Subscription
from tests.factories import bearer, register
from tests.providers.stripe.conftest import deliver, stripe_settings
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")

# Two entitlement groups: Pro (monthly or yearly) and a Storage add-on (monthly or yearly).
PLAN_AND_ADD_ON = """
[entitlements.pro]
description = "Everything in the app"

[entitlements.storage]
description = "100 GB of storage"

[products.pro_monthly]
name = "Pro, monthly"
entitlements = ["pro"]
stripe = { lookup_key = "pro_monthly", unit_amount = 999, currency = "usd", interval = "month" }

[products.pro_yearly]
name = "Pro, yearly"
entitlements = ["pro"]
stripe = { lookup_key = "pro_yearly", unit_amount = 9999, currency = "usd", interval = "year" }

[products.storage_monthly]
name = "Storage, monthly"
entitlements = ["storage"]
stripe = { lookup_key = "storage_monthly", unit_amount = 299, currency = "usd", interval = "month" }

[products.storage_yearly]
name = "Storage, yearly"
entitlements = ["storage"]
stripe = { lookup_key = "storage_yearly", unit_amount = 2999, currency = "usd", interval = "year" }
"""

ACTIONS = ("preview-change", "change", "cancel", "resume")
BASE = "/v1/billing/stripe/subscription/"


@pytest.fixture
def standin() -> Any:
    with StripeStandin() as running:
        yield running


@pytest.fixture
def settings_overrides(standin: StripeStandin, tmp_path: Path) -> dict[str, Any]:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(PLAN_AND_ADD_ON)
    return stripe_settings(standin) | {"catalog": catalog}


async def subscribe(
    http: httpx.AsyncClient, standin: StripeStandin, auth: dict[str, str], product: str
) -> str:
    """Pay `product` on Checkout at the stand-in and deliver its webhooks; the new subscription's id."""
    since = len(standin.events.log)
    response = await http.post("/v1/billing/stripe/checkout", json={"product": product}, headers=auth)
    assert response.status_code == 200, response.text
    standin.complete_checkout(response.json()["id"])
    for event in standin.events.log[since:]:
        assert (await deliver(http, standin, event)).status_code == 200
    return str(standin.state.get(response.json()["id"], "checkout.session")["subscription"])


async def pro_and_storage(
    http: httpx.AsyncClient, standin: StripeStandin, email: str
) -> tuple[dict[str, str], str, str]:
    auth = bearer(await register(http, email))
    return (
        auth,
        await subscribe(http, standin, auth, "pro_monthly"),
        await subscribe(http, standin, auth, "storage_monthly"),
    )


def plan_at_stripe(standin: StripeStandin, sub_id: str) -> tuple[str, bool]:
    """The lookup key of the subscription's price and whether it cancels at period end, at Stripe."""
    sub = standin.subscription(sub_id)
    return sub["items"]["data"][0]["price"]["lookup_key"], bool(sub["cancel_at_period_end"])


def body_for(action: str, product: str | None = None, **fields: Any) -> dict[str, Any]:
    return ({"product": product or "pro_yearly"} if "change" in action else {}) | fields


async def test_a_plan_change_hits_the_named_subscription_and_leaves_the_add_on_alone(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth, pro, storage = await pro_and_storage(client, standin, "two@example.com")
    # The Storage subscription ends last (it started second): the old guess would have picked it.
    preview = await client.post(
        BASE + "preview-change", json={"product": "pro_yearly", "subscription_id": pro}, headers=auth
    )
    assert preview.status_code == 200, preview.text
    assert preview.json()["subscription_id"] == pro
    changed = await client.post(
        BASE + "change",
        json={
            "product": "pro_yearly",
            "subscription_id": pro,
            "proration_date": preview.json()["proration_date"],
        },
        headers=auth,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["subscription_id"] == pro and changed.json()["product"] == "pro_yearly"
    assert plan_at_stripe(standin, pro) == ("pro_yearly", False)
    assert plan_at_stripe(standin, storage) == ("storage_monthly", False)
    answer = (await client.get("/v1/me/entitlements", headers=auth)).json()
    assert {s["id"]: s["product"] for s in answer["subscriptions"]} == {
        pro: "pro_yearly",
        storage: "storage_monthly",
    }
    assert answer["entitlements"]["storage"]["active"] and answer["entitlements"]["pro"]["active"]
    assert answer["entitlements"]["pro"]["duplicate_subscriptions"] == []

    canceled = await client.post(BASE + "cancel", json={"subscription_id": storage}, headers=auth)
    assert canceled.status_code == 200 and canceled.json()["subscription_id"] == storage
    assert plan_at_stripe(standin, storage) == ("storage_monthly", True)
    assert plan_at_stripe(standin, pro) == ("pro_yearly", False)
    resumed = await client.post(BASE + "resume", json={"subscription_id": storage}, headers=auth)
    assert resumed.status_code == 200 and resumed.json()["will_renew"] is True
    assert plan_at_stripe(standin, storage) == ("storage_monthly", False)


@pytest.mark.parametrize("action", ACTIONS)
async def test_with_two_subscriptions_an_action_without_an_id_is_refused_naming_both(
    client: httpx.AsyncClient, standin: StripeStandin, action: str
) -> None:
    auth, pro, storage = await pro_and_storage(client, standin, "which@example.com")
    for sent in ({"json": body_for(action)}, {} if action in ("cancel", "resume") else None):
        if sent is None:
            continue
        refused = await client.post(BASE + action, headers=auth, **sent)
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["code"] == "subscription_required"
        assert pro in error["message"] and storage in error["message"]
        assert error["details"]["subscriptions"] == [
            {"id": pro, "product": "pro_monthly"},
            {"id": storage, "product": "storage_monthly"},
        ]
    assert plan_at_stripe(standin, pro) == ("pro_monthly", False)
    assert plan_at_stripe(standin, storage) == ("storage_monthly", False)


@pytest.mark.parametrize("action", ["preview-change", "change"])
async def test_a_change_to_another_entitlement_group_is_not_a_plan_change(
    client: httpx.AsyncClient, standin: StripeStandin, action: str
) -> None:
    auth = bearer(await register(client, "group@example.com"))
    pro = await subscribe(client, standin, auth, "pro_monthly")
    since = len(standin.requests)
    for body in ({"product": "storage_yearly"}, {"product": "storage_monthly", "subscription_id": pro}):
        refused = await client.post(BASE + action, json=body, headers=auth)
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["code"] == "not_a_plan_change"
    assert plan_at_stripe(standin, pro) == ("pro_monthly", False)
    assert not [r for r in standin.requests[since:] if r["method"] == "POST"]  # nothing asked of Stripe


@pytest.mark.parametrize("action", ACTIONS)
async def test_someone_elses_subscription_is_not_found(
    client: httpx.AsyncClient, standin: StripeStandin, action: str
) -> None:
    _, theirs, _ = await pro_and_storage(client, standin, "owner@example.com")
    auth = bearer(await register(client, "intruder@example.com"))
    mine = await subscribe(client, standin, auth, "pro_monthly")
    standin.cancel_at_period_end(theirs)  # so a resume would have something to change
    for other in (theirs, "sub_" + uuid.uuid4().hex[:24]):
        refused = await client.post(BASE + action, json=body_for(action, subscription_id=other), headers=auth)
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"]["code"] == "no_stripe_subscription"
    assert plan_at_stripe(standin, theirs) == ("pro_monthly", True)
    assert plan_at_stripe(standin, mine) == ("pro_monthly", False)


async def test_cancel_and_resume_take_a_strict_body(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = bearer(await register(client, "one@example.com"))
    pro = await subscribe(client, standin, auth, "pro_monthly")
    typo = await client.post(BASE + "cancel", json={"subscription": pro}, headers=auth)
    assert typo.status_code == 422 and plan_at_stripe(standin, pro) == ("pro_monthly", False)
    # With one subscription the id may be left out: an empty body, or none at all.
    assert (await client.post(BASE + "cancel", json={}, headers=auth)).json()["will_renew"] is False
    assert (await client.post(BASE + "resume", headers=auth)).json()["will_renew"] is True


# --- the property ------------------------------------------------------------------------------------------
PRODUCTS = ("pro_monthly", "pro_yearly", "storage_monthly", "storage_yearly")


async def _stored(context: AppContext, ids: list[str]) -> dict[str, tuple[Any, ...]]:
    async with context.database.sessionmaker() as db:
        rows = await db.scalars(select(Subscription).where(Subscription.store_subscription_id.in_(ids)))
        return {
            row.store_subscription_id: (
                row.account_id,
                row.status,
                row.product,
                row.store_product_id,
                row.will_renew,
                row.current_period_end,
                row.vendor_updated_at,
                row.raw,
            )
            for row in rows.all()
        }


def _at_stripe(standin: StripeStandin, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {sub_id: copy.deepcopy(standin.subscription(sub_id)) for sub_id in ids}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["first", "second"]),  # who acts
            st.sampled_from(ACTIONS),
            st.sampled_from([0, 1, 2, None]),  # which subscription it names (None: none)
            st.sampled_from(PRODUCTS),
        ),
        min_size=1,
        max_size=6,
    )
)
async def test_no_action_ever_changes_a_subscription_other_than_the_one_named(
    client: httpx.AsyncClient, context: AppContext, standin: StripeStandin, steps: list[Any]
) -> None:
    # The database and the stand-in are shared by every example: each example has accounts of its own.
    tag = uuid.uuid4().hex[:10]
    first, pro, storage = await pro_and_storage(client, standin, f"first-{tag}@example.com")
    second = bearer(await register(client, f"second-{tag}@example.com"))
    theirs = await subscribe(client, standin, second, "pro_yearly")
    ids = [pro, storage, theirs]
    who = {"first": first, "second": second}
    owned = {"first": {pro, storage}, "second": {theirs}}

    for actor, action, target, product in steps:
        named = ids[target] if target is not None else None
        before_stripe, before_stored = _at_stripe(standin, ids), await _stored(context, ids)
        body = ({"product": product} if "change" in action else {}) | (
            {"subscription_id": named} if named else {}
        )
        response = await client.post(BASE + action, json=body, headers=who[actor])
        after_stripe, after_stored = _at_stripe(standin, ids), await _stored(context, ids)

        assert response.status_code < 500, response.text
        if named is not None and named not in owned[actor]:
            assert response.status_code == 404
        if named is None and len(owned[actor]) > 1:
            assert response.json()["error"]["code"] == "subscription_required"
        acted_on = response.json()["subscription_id"] if response.status_code == 200 else None
        if acted_on is not None:
            assert acted_on in owned[actor] and (named is None or acted_on == named)
        may_change = {acted_on} if action != "preview-change" else set()
        for sub_id in ids:
            if sub_id in may_change:
                continue
            assert after_stripe[sub_id] == before_stripe[sub_id], (actor, action, named, sub_id)
            assert after_stored[sub_id] == before_stored[sub_id], (actor, action, named, sub_id)
        if acted_on is not None and action == "change":
            assert after_stripe[acted_on]["items"]["data"][0]["price"]["lookup_key"] == product
