"""Promotion codes on every web purchase path, against the Stripe stand-in: hosted Checkout (subscription
and payment mode), the Payment Element's subscription and PaymentIntent, every refusal, and the
answer's `discount`. Coupons and codes are made with the `stripe` SDK, so the stand-in is held to what
the SDK sends (API 2025-09-30+: `promotion[coupon]`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from entitle.providers.stripe.client import FormBodyHTTPXClient
from tests.factories import bearer, register
from tests.providers.stripe.conftest import deliver_all, stripe_settings
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    return stripe_settings(standin)


@pytest.fixture
def merchant(standin: StripeStandin) -> Iterator[stripe.StripeClient]:
    """The merchant's own Stripe client (the dashboard, in effect), through the official SDK."""
    http = FormBodyHTTPXClient(allow_sync_methods=True)
    yield stripe.StripeClient(standin.secret_key, base_addresses={"api": standin.base_url}, http_client=http)
    http.close()  # type: ignore[no-untyped-call]


def make_code(client: stripe.StripeClient, code: str, coupon: dict[str, Any], **promo: Any) -> dict[str, Any]:
    """A coupon and a promotion code for it, made as a merchant would (dashboard or API)."""
    made = client.v1.coupons.create(coupon)  # type: ignore[arg-type]
    created = client.v1.promotion_codes.create(
        {"code": code, "promotion": {"type": "coupon", "coupon": made.id}, **promo}
    )
    return {"coupon": made.id, "promotion_code": created.id}


def product_id(standin: StripeStandin, lookup_key: str) -> str:
    price = next(p for p in standin.state.all("price") if p.get("lookup_key") == lookup_key)
    return str(price["product"])


async def test_checkout_for_a_subscription_carries_the_code_and_the_invoice_is_discounted(
    client: httpx.AsyncClient, standin: StripeStandin, merchant: stripe.StripeClient
) -> None:
    made = make_code(
        merchant, "LAUNCH20", {"percent_off": 20, "duration": "repeating", "duration_in_months": 3}
    )
    auth = bearer(await register(client, "launch@example.com"))
    started = await client.post(
        "/v1/billing/stripe/checkout",
        json={"product": "pro_monthly", "promotion_code": "launch20"},
        headers=auth,
    )
    assert started.status_code == 200, started.text
    session = standin.state.get(started.json()["id"], "checkout.session")
    assert session["discounts"] == [{"coupon": made["coupon"], "promotion_code": made["promotion_code"]}]
    assert session["allow_promotion_codes"] is None
    assert session["amount_total"] == 799
    standin.complete_checkout(session["id"])
    sub = standin.subscription(session["subscription"])
    invoice = standin.state.get(sub["latest_invoice"], "invoice")
    assert (invoice["subtotal"], invoice["total"], invoice["amount_paid"]) == (999, 799, 799)
    assert standin.state.get(made["promotion_code"], "promotion_code")["times_redeemed"] == 1

    await deliver_all(client, standin)
    answer = (await client.get("/v1/me/entitlements", headers=auth)).json()
    assert answer["entitlements"]["pro"]["active"] is True
    discount = answer["subscriptions"][0]["discount"]
    assert discount["code"] == "LAUNCH20"
    assert discount["percent_off"] == 20 and discount["amount_off"] is None
    assert discount["duration"] == "repeating" and discount["duration_in_months"] == 3
    assert discount["ends_at"] is not None

    # The next two renewals stay discounted; the fourth period is full price, and the discount is gone.
    for expected in (799, 799, 999):
        standin.renew(sub["id"])
        renewed = standin.state.get(standin.subscription(sub["id"])["latest_invoice"], "invoice")
        assert renewed["amount_paid"] == expected
    assert standin.subscription(sub["id"])["discounts"] == []
    await deliver_all(client, standin)
    answer = (await client.get("/v1/me/entitlements", headers=auth)).json()
    assert answer["subscriptions"][0]["discount"] is None


async def test_without_a_code_checkout_offers_the_field_on_stripes_page(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    auth = bearer(await register(client, "field@example.com"))
    started = await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=auth)
    session = standin.state.get(started.json()["id"], "checkout.session")
    assert session["allow_promotion_codes"] is True and session["discounts"] == []
    answer = (await client.get("/v1/me/entitlements", headers=auth)).json()
    assert all(sub["discount"] is None for sub in answer["subscriptions"])


async def test_checkout_in_payment_mode_takes_a_fixed_amount_off(
    client: httpx.AsyncClient, standin: StripeStandin, merchant: stripe.StripeClient
) -> None:
    make_code(merchant, "FIVEOFF", {"amount_off": 500, "currency": "usd", "duration": "once"})
    auth = bearer(await register(client, "lifetime@example.com"))
    started = await client.post(
        "/v1/billing/stripe/checkout",
        json={"product": "pro_lifetime", "promotion_code": "FIVEOFF"},
        headers=auth,
    )
    assert started.status_code == 200, started.text
    session = standin.complete_checkout(started.json()["id"])
    intent = standin.payment_intent(session["payment_intent"])
    assert intent["amount"] == 19999 - 500
    receipt = standin.state.get(session["invoice"], "invoice")
    assert (receipt["subtotal"], receipt["total"]) == (19999, 19499)
    await deliver_all(client, standin)
    answer = (await client.get("/v1/me/entitlements", headers=auth)).json()
    assert answer["entitlements"]["pro"]["active"] is True


async def test_a_payment_intent_is_reduced_by_the_code_and_remembers_it(
    client: httpx.AsyncClient, standin: StripeStandin, merchant: stripe.StripeClient
) -> None:
    made = make_code(merchant, "PACK15", {"percent_off": 15, "duration": "once"})
    auth = bearer(await register(client, "pi@example.com"))
    started = await client.post(
        "/v1/billing/stripe/payment",
        json={"product": "credits_100", "quantity": 3, "promotion_code": "PACK15"},
        headers=auth,
    )
    assert started.status_code == 200, started.text
    intent = standin.payment_intent(started.json()["payment_intent_id"])
    # 3 × 499 = 1497; 15% is 224.55, rounded to 225 off.
    assert intent["amount"] == 1272
    assert intent["metadata"]["entitle_promotion_code"] == "PACK15"
    assert intent["metadata"]["entitle_promotion_code_id"] == made["promotion_code"]
    # The same request again (a double click) confirms the same payment; without the code, another one.
    again = await client.post(
        "/v1/billing/stripe/payment",
        json={"product": "credits_100", "quantity": 3, "promotion_code": "PACK15"},
        headers=auth,
    )
    assert again.json()["payment_intent_id"] == intent["id"]
    plain = await client.post(
        "/v1/billing/stripe/payment", json={"product": "credits_100", "quantity": 3}, headers=auth
    )
    assert standin.payment_intent(plain.json()["payment_intent_id"])["amount"] == 1497
    assert standin.confirm_payment_intent(intent["id"])
    await deliver_all(client, standin)
    answer = (await client.get("/v1/me/entitlements", headers=auth)).json()
    assert answer["balances"]["credits"] == 300


async def test_the_payment_element_subscription_carries_the_discount(
    client: httpx.AsyncClient, standin: StripeStandin, merchant: stripe.StripeClient
) -> None:
    make_code(merchant, "HALF", {"percent_off": 50, "duration": "forever"})
    auth = bearer(await register(client, "element@example.com"))
    started = await client.post(
        "/v1/billing/stripe/subscription",
        json={"product": "pro_monthly", "promotion_code": "HALF"},
        headers=auth,
    )
    assert started.status_code == 200, started.text
    sub = standin.subscription(started.json()["subscription_id"])
    assert len(sub["discounts"]) == 1
    first = standin.state.get(sub["latest_invoice"], "invoice")
    assert first["amount_due"] == 499  # half of 999 is 499.5 off, rounded half up to 500
    assert standin.pay_first_invoice(sub["id"])
    await deliver_all(client, standin)
    answer = (await client.get("/v1/me/entitlements", headers=auth)).json()
    assert answer["subscriptions"][0]["discount"]["code"] == "HALF"
    assert answer["subscriptions"][0]["discount"]["duration"] == "forever"
    assert answer["subscriptions"][0]["discount"]["ends_at"] is None


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/billing/stripe/checkout", {"product": "pro_monthly"}),
        ("/v1/billing/stripe/checkout", {"product": "pro_lifetime"}),
        ("/v1/billing/stripe/subscription", {"product": "pro_monthly"}),
        ("/v1/billing/stripe/payment", {"product": "credits_100"}),
    ],
)
async def test_every_refusal_is_422_invalid_promotion_code_and_creates_nothing(
    client: httpx.AsyncClient,
    standin: StripeStandin,
    merchant: stripe.StripeClient,
    path: str,
    body: dict[str, Any],
) -> None:
    make_code(merchant, "OFF", {"percent_off": 10}, active=False)
    late = make_code(merchant, "LATE", {"percent_off": 10}, expires_at=standin.now() + 60)
    make_code(merchant, "ONCE", {"percent_off": 10}, max_redemptions=1)
    make_code(merchant, "OTHER", {"percent_off": 10, "applies_to": {"products": ["prod_somethingelse"]}})
    make_code(merchant, "EUROS", {"amount_off": 100, "currency": "eur"})
    make_code(
        merchant,
        "BIGSPEND",
        {"percent_off": 10},
        restrictions={"minimum_amount": 1_000_000, "minimum_amount_currency": "usd"},
    )
    ended = make_code(merchant, "ENDED", {"percent_off": 10})
    merchant.v1.coupons.delete(ended["coupon"])
    used = make_code(merchant, "USEDUP", {"percent_off": 10}, max_redemptions=1)
    standin.state.get(used["promotion_code"], "promotion_code")["times_redeemed"] = 1
    # A minute past its expiry (entitle's clock is the real one, not the stand-in's).
    standin.state.get(late["promotion_code"], "promotion_code")["expires_at"] = int(time.time()) - 60
    auth = bearer(await register(client, "refused@example.com"))
    before = (
        len(standin.state.all("checkout.session")),
        len(standin.state.all("subscription")),
        len(standin.state.all("payment_intent")),
    )
    for code, words in [
        ("NOSUCHCODE", "There is no promotion code"),
        ("bad code!", "There is no promotion code"),
        ("OFF", "no longer active"),
        ("LATE", "has expired"),
        ("USEDUP", "as many times"),
        ("ENDED", "has ended"),
        ("OTHER", "does not apply to this product"),
        ("EUROS", "USD"),
        ("BIGSPEND", "larger purchase"),
    ]:
        response = await client.post(path, json={**body, "promotion_code": code}, headers=auth)
        assert response.status_code == 422, (code, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_promotion_code", (code, error)
        assert words in error["message"], (code, error["message"])
    after = (
        len(standin.state.all("checkout.session")),
        len(standin.state.all("subscription")),
        len(standin.state.all("payment_intent")),
    )
    assert after == before


async def test_a_first_purchase_code_is_refused_after_a_purchase(
    client: httpx.AsyncClient, standin: StripeStandin, merchant: stripe.StripeClient
) -> None:
    make_code(merchant, "WELCOME", {"percent_off": 30}, restrictions={"first_time_transaction": True})
    auth = bearer(await register(client, "returning@example.com"))
    first = await client.post(
        "/v1/billing/stripe/checkout",
        json={"product": "credits_100", "promotion_code": "WELCOME"},
        headers=auth,
    )
    assert first.status_code == 200, first.text
    standin.complete_checkout(first.json()["id"])
    await deliver_all(client, standin)
    again = await client.post(
        "/v1/billing/stripe/checkout",
        json={"product": "credits_100", "promotion_code": "WELCOME"},
        headers=auth,
    )
    assert again.status_code == 422
    assert again.json()["error"]["code"] == "invalid_promotion_code"
    assert "first purchase" in again.json()["error"]["message"]


async def test_a_code_for_the_product_applies_to_it(
    client: httpx.AsyncClient, standin: StripeStandin, merchant: stripe.StripeClient
) -> None:
    make_code(
        merchant,
        "MONTHLY",
        {"percent_off": 10, "applies_to": {"products": [product_id(standin, "pro_monthly")]}},
    )
    auth = bearer(await register(client, "only@example.com"))
    ok = await client.post(
        "/v1/billing/stripe/checkout",
        json={"product": "pro_monthly", "promotion_code": "MONTHLY"},
        headers=auth,
    )
    assert ok.status_code == 200, ok.text
    assert standin.state.get(ok.json()["id"], "checkout.session")["amount_total"] == 899


async def test_the_stand_in_refuses_the_removed_parameters(merchant: stripe.StripeClient) -> None:
    client = merchant
    coupon = client.v1.coupons.create({"percent_off": 10})
    with pytest.raises(stripe.InvalidRequestError):
        client.raw_request("post", "/v1/promotion_codes", coupon=coupon.id, code="OLDSTYLE")
    customer = client.v1.customers.create({})
    with pytest.raises(stripe.InvalidRequestError):
        client.raw_request("post", "/v1/subscriptions", customer=customer.id, coupon=coupon.id)


async def test_a_code_stripe_refuses_after_our_check_is_still_invalid_promotion_code(
    client: httpx.AsyncClient, standin: StripeStandin, merchant: stripe.StripeClient
) -> None:
    """The customer paid at Stripe outside entitle (a dashboard invoice): entitle's records say first
    purchase, Stripe says not, and Stripe's refusal reaches the client as the same 422, not a 503."""
    make_code(merchant, "WELCOME", {"percent_off": 30}, restrictions={"first_time_transaction": True})
    auth = bearer(await register(client, "paid-elsewhere@example.com"))
    # A first checkout (no code) makes the account's Stripe customer; then it pays outside entitle.
    opened = await client.post("/v1/billing/stripe/checkout", json={"product": "credits_100"}, headers=auth)
    customer = standin.state.get(opened.json()["id"], "checkout.session")["customer"]
    standin.state.add({"object": "charge", "customer": customer, "status": "succeeded", "amount": 1000}, "ch")
    refused = await client.post(
        "/v1/billing/stripe/subscription",
        json={"product": "pro_monthly", "promotion_code": "WELCOME"},
        headers=auth,
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "invalid_promotion_code"
    assert "first-time customers" in refused.json()["error"]["message"]
    assert standin.state.all("subscription") == []


async def test_changing_the_code_on_the_payment_element_replaces_the_waiting_subscription(
    client: httpx.AsyncClient, standin: StripeStandin, merchant: stripe.StripeClient
) -> None:
    make_code(merchant, "HALF", {"percent_off": 50, "duration": "forever"})
    auth = bearer(await register(client, "changes-mind@example.com"))

    async def start(code: str | None) -> dict[str, Any]:
        body = {"product": "pro_monthly"} | ({"promotion_code": code} if code else {})
        response = await client.post("/v1/billing/stripe/subscription", json=body, headers=auth)
        assert response.status_code == 200, response.text
        return standin.subscription(response.json()["subscription_id"])

    plain = await start(None)
    halved = await start("HALF")
    assert halved["id"] != plain["id"] and standin.subscription(plain["id"])["status"] != "incomplete"
    assert (await start("HALF"))["id"] == halved["id"]  # a double click: the same one
    again = await start(None)
    assert again["id"] not in (plain["id"], halved["id"]) and again["status"] == "incomplete"
    assert standin.state.get(again["latest_invoice"], "invoice")["amount_due"] == 999
    assert standin.subscription(halved["id"])["status"] != "incomplete"
