"""The gateway: pinned version on every call, 429 backoff, errors translated at the edge."""

from __future__ import annotations

import pytest
import stripe

from entitle.db.types import utcnow
from entitle.errors import Conflict, ProviderUnavailable
from entitle.providers.stripe.client import STRIPE_API_VERSION, StripeGateway
from entitle.providers.stripe.errors import PaymentRequired, StripeObjectMissing
from tests.standins.stripe import StripeStandin


def test_the_pinned_version_is_the_sdks_own() -> None:
    assert STRIPE_API_VERSION == stripe.api_version
    assert stripe.VERSION.startswith("16.")


def gateway(standin: StripeStandin, sleeps: list[float] | None = None, **kw: object) -> StripeGateway:
    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    return StripeGateway(standin.secret_key, api_base=standin.base_url, sleep=sleep, **kw)  # type: ignore[arg-type]


async def test_every_request_carries_the_pinned_version_and_posts_an_idempotency_key(
    standin: StripeStandin,
) -> None:
    g = gateway(standin)
    customer = await g.create_customer(
        account_id="acct-1", email="a@example.com", idempotency_key="cus-key-1"
    )
    again = await g.create_customer(account_id="acct-1", email="a@example.com", idempotency_key="cus-key-1")
    assert again["id"] == customer["id"]  # replayed, not created twice
    await g.retrieve_customer(customer["id"])
    # The subscription re-read goes through the SDK's raw request path: same version, same errors.
    with pytest.raises(StripeObjectMissing):
        await g.retrieve_subscription("sub_missing")
    assert standin.requests[-1]["path"] == "/v1/subscriptions/sub_missing"
    assert {r["stripe_version"] for r in standin.requests} == {STRIPE_API_VERSION}
    assert [r["idempotency_key"] for r in standin.requests if r["method"] == "POST"] == ["cus-key-1"] * 2
    await g.aclose()


async def test_rate_limits_back_off_then_succeed(standin: StripeStandin) -> None:
    sleeps: list[float] = []
    g = gateway(standin, sleeps)
    standin.rate_limit(3)
    customer = await g.create_customer(account_id="a", email=None, idempotency_key="k")
    assert customer["object"] == "customer" and len(sleeps) == 3
    assert sleeps[0] < sleeps[1] < sleeps[2]
    standin.rate_limit(100)
    with pytest.raises(ProviderUnavailable) as caught:
        await g.retrieve_customer(customer["id"])
    assert caught.value.code == "stripe_rate_limited"
    await g.aclose()


async def test_errors_are_translated(standin: StripeStandin) -> None:
    g = gateway(standin)
    with pytest.raises(StripeObjectMissing):
        await g.retrieve_subscription("sub_missing")
    await g.create_customer(account_id="a", email=None, idempotency_key="same")
    with pytest.raises(Conflict) as conflict:
        await g.create_customer(account_id="b", email=None, idempotency_key="same")
    assert conflict.value.code == "stripe_idempotency_conflict"
    bad_key = StripeGateway("sk_test_wrong", api_base=standin.base_url)
    with pytest.raises(ProviderUnavailable) as misconfigured:
        await bad_key.retrieve_customer("cus_1")
    assert misconfigured.value.code == "stripe_misconfigured"
    nowhere = StripeGateway(standin.secret_key, api_base="http://127.0.0.1:9", max_network_retries=0)
    with pytest.raises(ProviderUnavailable) as unavailable:
        await nowhere.retrieve_customer("cus_1")
    assert unavailable.value.code == "stripe_unavailable"
    for client in (g, bad_key, nowhere):
        await client.aclose()


async def test_card_declines_become_402(standin: StripeStandin) -> None:
    g = gateway(standin)
    customer = await g.create_customer(account_id="a", email=None, idempotency_key="c")
    product = await g.create_product({"name": "Pro"}, idempotency_key="p")
    price = await g.create_price(
        {"product": product["id"], "unit_amount": 500, "currency": "usd", "recurring": {"interval": "month"}},
        idempotency_key="pr",
    )
    sub = await g.create_subscription(
        {
            "customer": customer["id"],
            "items": [{"price": price["id"]}],
            "payment_behavior": "default_incomplete",
        },
        idempotency_key="s",
    )
    standin.pay_first_invoice(sub["id"], card="0341")  # declined: no default card saved
    assert standin.subscription(sub["id"])["status"] == "incomplete"
    standin.pay_first_invoice(sub["id"])
    standin.state.declining_payment_methods.add(standin.subscription(sub["id"])["default_payment_method"])
    other = await g.create_price(
        {"product": product["id"], "unit_amount": 900, "currency": "usd", "recurring": {"interval": "month"}},
        idempotency_key="pr2",
    )
    with pytest.raises(PaymentRequired) as declined:
        await g.change_price(
            sub["id"],
            item_id=sub["items"]["data"][0]["id"],
            price_id=other["id"],
            proration_date=standin.now(),
        )
    assert declined.value.status_code == 402 and declined.value.code == "card_declined"
    await g.aclose()


async def test_iterating_subscriptions_pages_through_all_of_them(standin: StripeStandin) -> None:
    g = gateway(standin, [])
    customer = await g.create_customer(account_id="a", email=None, idempotency_key="c")
    product = await g.create_product({"name": "Pro"}, idempotency_key="p")
    price = await g.create_price(
        {"product": product["id"], "unit_amount": 500, "currency": "usd", "recurring": {"interval": "month"}},
        idempotency_key="pr",
    )
    made = {
        (
            await g.create_subscription(
                {"customer": customer["id"], "items": [{"price": price["id"]}]}, idempotency_key=f"s{i}"
            )
        )["id"]
        for i in range(105)
    }
    standin.rate_limit(1)
    before = utcnow()
    seen = [(sub["id"], read_at) async for sub, read_at in g.iter_subscriptions()]
    # Each carries the moment its page was requested, never a later one.
    assert all(before <= read_at <= utcnow() for _, read_at in seen)
    assert len({read_at for _, read_at in seen[:100]}) == 1 and seen[100][1] >= seen[0][1]
    seen_ids = [sub_id for sub_id, _ in seen]
    assert set(seen_ids) == made and len(seen_ids) == 105
    assert sum(1 for r in standin.requests if r["path"] == "/v1/subscriptions" and r["method"] == "GET") == 3
    await g.aclose()
