"""The gateway: pinned version on every call, 429 backoff, errors translated at the edge."""

from __future__ import annotations

import asyncio

import pytest
import stripe

from entitle.db.types import utcnow
from entitle.errors import Conflict, ProviderUnavailable
from entitle.providers.stripe.client import (
    RETRIEVE_SUBSCRIPTION,
    STRIPE_API_VERSION,
    StripeGateway,
    stripe_limits,
)
from entitle.providers.stripe.errors import PaymentRequired, StripeObjectMissing
from entitle.settings import Settings
from tests.standins.stripe import StripeStandin


def test_the_pinned_version_is_the_sdks_own() -> None:
    assert STRIPE_API_VERSION == stripe.api_version
    assert stripe.VERSION.startswith("16.")


def gateway(standin: StripeStandin, sleeps: list[float] | None = None, **kw: object) -> StripeGateway:
    """A gateway whose waits are recorded in `sleeps` instead of slept; when recording, its clock is a
    virtual one that a wait moves forward, so what it waits for does not depend on how busy the machine is."""
    if sleeps is None:
        return StripeGateway(standin.secret_key, api_base=standin.base_url, **kw)  # type: ignore[arg-type]
    now = [1000.0]

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    return StripeGateway(
        standin.secret_key,
        api_base=standin.base_url,
        sleep=sleep,
        clock=lambda: now[0],
        **kw,  # type: ignore[arg-type]
    )


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


async def test_rate_limits_back_off_within_seconds_then_succeed(standin: StripeStandin) -> None:
    sleeps: list[float] = []
    g = gateway(standin, sleeps)
    standin.rate_limit(3)
    customer = await g.create_customer(account_id="a", email=None, idempotency_key="k")
    assert customer["object"] == "customer" and len(sleeps) == 3
    assert sleeps[0] < sleeps[1] < sleeps[2] < 3  # short, growing, never the inbox's 30 s
    assert g.stats.rate_limited == {"POST /v1/customers": 3} and g.stats.requests["POST /v1/customers"] == 4
    sleeps.clear()
    standin.rate_limit(100)
    with pytest.raises(ProviderUnavailable) as caught:
        await g.retrieve_customer(customer["id"])
    assert caught.value.code == "stripe_rate_limited"
    # Gave up after about 20 seconds of short waits, never one of them long.
    assert 15 < sum(sleeps) < 30 and max(sleeps) < 3
    read = "GET /v1/customers/{id}"
    assert standin.stats.rate_limited[read] == g.stats.rate_limited[read]
    await g.aclose()


async def test_a_retry_after_header_is_honored(standin: StripeStandin) -> None:
    sleeps: list[float] = []
    g = gateway(standin, sleeps)
    standin.rate_limit(1, retry_after=1.5)
    await g.create_customer(account_id="a", email=None, idempotency_key="k")
    assert sleeps == [pytest.approx(1.5, abs=0.1)]
    await g.aclose()


async def test_concurrent_reads_stay_under_stripes_limits() -> None:
    with StripeStandin(
        latency_ms=20, jitter_ms=10, rate_limit_per_second=25, endpoint_rate_limit_per_second=25
    ) as limited:
        g = StripeGateway(limited.secret_key, api_base=limited.base_url)
        customer = await g.create_customer(account_id="a", email=None, idempotency_key="c")
        product = await g.create_product({"name": "Pro"}, idempotency_key="p")
        price = await g.create_price(
            {"product": product["id"], "unit_amount": 5, "currency": "usd", "recurring": {"interval": "day"}},
            idempotency_key="pr",
        )
        sub = await g.create_subscription(
            {"customer": customer["id"], "items": [{"price": price["id"]}]}, idempotency_key="s"
        )
        reads = await asyncio.gather(*(g.retrieve_subscription(sub["id"]) for _ in range(60)))
        assert {read["id"] for read in reads} == {sub["id"]}
        assert limited.stats.requests[RETRIEVE_SUBSCRIPTION] == g.stats.requests[RETRIEVE_SUBSCRIPTION] == 60
        assert limited.stats.total_rate_limited == 0 and g.stats.total_rate_limited == 0
        await g.aclose()


async def test_a_process_faster_than_the_account_limit_is_slowed_by_the_429s_and_gets_through() -> None:
    # This process believes it may send 1,000/s; Stripe allows the account 5: its 429s (global-rate)
    # hold every endpoint back, and every call gets through within seconds.
    with StripeStandin(rate_limit_per_second=5) as limited:
        g = StripeGateway(limited.secret_key, api_base=limited.base_url, max_requests_per_second=1000)
        made = await asyncio.gather(
            *(g.create_customer(account_id=f"a{i}", email=None, idempotency_key=f"c{i}") for i in range(6)),
            *(g.create_product({"name": f"P{i}"}, idempotency_key=f"p{i}") for i in range(4)),
        )
        assert len({obj["id"] for obj in made}) == 10
        assert limited.stats.total_rate_limited > 0
        assert g.stats.total_rate_limited == limited.stats.total_rate_limited
        await g.aclose()


async def test_a_reserved_read_leaves_without_waiting_again(standin: StripeStandin) -> None:
    sleeps: list[float] = []
    g = gateway(standin, sleeps)
    with pytest.raises(StripeObjectMissing):
        await g.retrieve_subscription("sub_1")  # the endpoint is busy for the next 1/25 s
    async with g.pacer.reserved(RETRIEVE_SUBSCRIPTION):
        assert len(sleeps) == 1  # the reservation waited for the slot
        with pytest.raises(StripeObjectMissing):
            await g.retrieve_subscription("sub_2")
        assert len(sleeps) == 1  # the read inside it did not
    assert g.stats.requests[RETRIEVE_SUBSCRIPTION] == 2
    await g.aclose()


def test_the_limits_follow_the_key_unless_overridden() -> None:
    assert stripe_limits("sk_test_x") == stripe_limits("rk_test_x") == (25, 25)
    assert stripe_limits("sk_live_x") == stripe_limits("rk_live_x") == (100, 25)
    assert stripe_limits("sk_live_x", 10) == (10, 10) and stripe_limits("sk_test_x", 300) == (300, 25)
    settings = Settings(
        environment="test", stripe_secret_key="sk_live_0123456789abcdef", stripe_max_requests_per_second=40
    )
    paced = StripeGateway.from_settings(settings).pacer
    assert (paced.per_second, paced.limit_of(RETRIEVE_SUBSCRIPTION)) == (40, 25)


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
