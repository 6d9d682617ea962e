"""The Stripe stand-in speaks Stripe's wire format; tests elsewhere rely on it, so it is tested too."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.standins.stripe import StripeStandin
from tests.standins.stripe.server import ServerThread
from tests.standins.stripe.wire import decode_form


def test_bracketed_form_keys_decode_like_stripe() -> None:
    pairs = [
        ("items[0][price]", "p1"),
        ("items[0][quantity]", "2"),
        ("expand[]", "a.b"),
        ("expand[]", "c"),
        ("metadata[account_id]", "x"),
        ("lookup_keys[0]", "k1"),
        ("lookup_keys[1]", "k2"),
        ("pause_collection", ""),
    ]
    assert decode_form(pairs) == {
        "items": [{"price": "p1", "quantity": "2"}],
        "expand": ["a.b", "c"],
        "metadata": {"account_id": "x"},
        "lookup_keys": ["k1", "k2"],
        "pause_collection": "",
    }


@pytest.fixture
def http(standin: StripeStandin) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {standin.secret_key}"}
    with httpx.Client(base_url=standin.base_url, headers=headers) as client:
        yield client


def test_errors_lists_and_idempotency_over_raw_http(standin: StripeStandin, http: httpx.Client) -> None:
    assert httpx.get(f"{standin.base_url}/v1/customers").status_code == 401
    missing = http.get("/v1/customers/cus_nope")
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "message": "No such customer: 'cus_nope'",
        "param": "id",
    }
    assert http.post("/v1/prices", data={"currency": "usd"}).json()["error"]["code"] == "parameter_missing"
    first = http.post("/v1/customers", data={"email": "a@example.com"}, headers={"Idempotency-Key": "k"})
    replay = http.post("/v1/customers", data={"email": "a@example.com"}, headers={"Idempotency-Key": "k"})
    assert replay.json()["id"] == first.json()["id"] and replay.headers["Idempotent-Replayed"] == "true"
    other = http.post("/v1/customers", data={"email": "b@example.com"}, headers={"Idempotency-Key": "k"})
    assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"
    for i in range(4):
        http.post("/v1/customers", data={"email": f"{i}@example.com"})
    page = http.get("/v1/customers", params={"limit": 2}).json()
    assert page["object"] == "list" and page["has_more"] is True and len(page["data"]) == 2
    rest = http.get("/v1/customers", params={"limit": 10, "starting_after": page["data"][-1]["id"]}).json()
    assert rest["has_more"] is False and len(page["data"]) + len(rest["data"]) == 5
    standin.rate_limit(1)
    limited = http.get("/v1/customers")
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limit"


def test_limits_refuse_a_burst_as_stripe_does() -> None:
    with StripeStandin(rate_limit_per_second=100, endpoint_rate_limit_per_second=2) as limited:
        headers = {"Authorization": f"Bearer {limited.secret_key}"}
        with httpx.Client(base_url=limited.base_url, headers=headers) as http:
            answers = [http.get(f"/v1/customers/cus_{i}") for i in range(5)]
    refused = answers[2:]
    assert [a.status_code for a in answers] == [404, 404, 429, 429, 429]
    assert refused[0].json()["error"] == {
        "type": "invalid_request_error",
        "code": "rate_limit",
        "message": "Request rate limit exceeded. Learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
    }
    assert refused[0].headers["Stripe-Rate-Limited-Reason"] == "endpoint-rate"
    assert limited.stats.requests == {"GET /v1/customers/{id}": 5}
    assert limited.stats.rate_limited == {"GET /v1/customers/{id}": 3}


def test_objects_are_shaped_like_stripes(standin: StripeStandin, http: httpx.Client) -> None:
    customer = http.post("/v1/customers", data={"metadata[account_id]": "a1"}).json()
    assert (
        customer["id"].startswith("cus_")
        and customer["object"] == "customer"
        and customer["livemode"] is False
    )
    product = http.post("/v1/products", data={"name": "Pro"}).json()
    price = http.post(
        "/v1/prices",
        data={
            "product": product["id"],
            "unit_amount": "999",
            "currency": "usd",
            "recurring[interval]": "month",
            "lookup_key": "pro",
        },
    ).json()
    sub = http.post(
        "/v1/subscriptions",
        data={
            "customer": customer["id"],
            "items[0][price]": price["id"],
            "payment_behavior": "default_incomplete",
            "payment_settings[save_default_payment_method]": "on_subscription",
            "expand[]": "latest_invoice.confirmation_secret",
        },
    ).json()
    assert sub["status"] == "incomplete" and "current_period_end" not in sub
    item = sub["items"]["data"][0]
    assert item["price"]["lookup_key"] == "pro" and item["current_period_end"] > item["current_period_start"]
    assert sub["latest_invoice"]["confirmation_secret"]["client_secret"].startswith("pi_")
    plain = http.get(f"/v1/invoices/{sub['latest_invoice']['id']}").json()
    assert (
        "confirmation_secret" not in plain
        and plain["parent"]["subscription_details"]["subscription"] == sub["id"]
    )
    taken = http.post(
        "/v1/prices",
        data={
            "product": product["id"],
            "unit_amount": "1299",
            "currency": "usd",
            "recurring[interval]": "month",
            "lookup_key": "pro",
        },
    )
    assert taken.status_code == 400
    moved = http.post(
        "/v1/prices",
        data={
            "product": product["id"],
            "unit_amount": "1299",
            "currency": "usd",
            "recurring[interval]": "month",
            "lookup_key": "pro",
            "transfer_lookup_key": "true",
        },
    ).json()
    found = http.get("/v1/prices", params={"lookup_keys[]": "pro"}).json()["data"]
    assert [p["id"] for p in found] == [moved["id"]]


def test_events_are_signed_exactly_like_stripe(standin: StripeStandin, http: httpx.Client) -> None:
    http.post("/v1/customers", data={"email": "a@example.com"})
    event = standin.events.log[-1]
    body, headers = standin.signed(event)
    verified = stripe.Webhook.construct_event(body, headers["Stripe-Signature"], standin.webhook_secret)
    assert verified.id == event["id"] and verified.type == "customer.created"
    assert event["api_version"] == stripe.api_version and event["id"].startswith("evt_")
    old_body, old_headers = standin.signed(event, timestamp=int(time.time()) - 600)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(old_body, old_headers["Stripe-Signature"], standin.webhook_secret)


def _open_session(http: httpx.Client, **extra: str) -> dict[str, Any]:
    product = http.post("/v1/products", data={"name": "Pro, monthly"}).json()
    price = http.post(
        "/v1/prices",
        data={
            "product": product["id"],
            "unit_amount": "999",
            "currency": "usd",
            "recurring[interval]": "month",
        },
    ).json()
    data = {
        "mode": "subscription",
        "customer_email": "page@example.com",
        "line_items[0][price]": price["id"],
        "success_url": "http://app.test/billing/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "http://app.test/billing/canceled",
        **extra,
    }
    session: dict[str, Any] = http.post("/v1/checkout/sessions", data=data).json()
    return session


def test_the_hosted_checkout_page_pays_and_returns_to_the_success_url(
    standin: StripeStandin, http: httpx.Client
) -> None:
    session = _open_session(http)
    with httpx.Client() as browser:  # no key: a person's browser
        page = browser.get(session["url"])
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "Pro, monthly" in page.text and "$9.99 per month" in page.text
        assert 'value="4242 4242 4242 4242"' in page.text
        assert 'href="http://app.test/billing/canceled"' in page.text
        paid = browser.post(session["url"], data={"card_number": "4242 4242 4242 4242"})
        assert paid.status_code == 303
        assert paid.headers["location"] == f"http://app.test/billing/success?session_id={session['id']}"
        assert browser.get(session["url"]).status_code == 404  # paid: no longer open
    done = http.get(f"/v1/checkout/sessions/{session['id']}").json()
    assert done["status"] == "complete" and done["url"] is None
    assert standin.events.types()[-1] == "checkout.session.completed"


def test_a_session_without_a_customer_asks_the_email_and_makes_a_customer_as_stripe_does(
    standin: StripeStandin, http: httpx.Client
) -> None:
    product = http.post("/v1/products", data={"name": "Lifetime"}).json()
    one_time = http.post(
        "/v1/prices", data={"product": product["id"], "unit_amount": "1999", "currency": "usd"}
    ).json()
    base = {
        "line_items[0][price]": one_time["id"],
        "success_url": "http://app.test/ok?session_id={CHECKOUT_SESSION_ID}",
    }
    # Stripe's refusals: customer_creation in subscription mode, or beside a customer.
    refused = _open_session(http, customer_creation="always")
    assert refused["error"]["param"] == "customer_creation"
    customer = http.post("/v1/customers", data={"email": "c@example.com"}).json()
    both = http.post(
        "/v1/checkout/sessions",
        data={**base, "mode": "payment", "customer": customer["id"], "customer_creation": "always"},
    )
    assert both.status_code == 400 and both.json()["error"]["param"] == "customer_creation"

    guest = http.post("/v1/checkout/sessions", data={**base, "mode": "payment"}).json()
    always = http.post(
        "/v1/checkout/sessions", data={**base, "mode": "payment", "customer_creation": "always"}
    ).json()
    assert (guest["customer"], guest["customer_creation"]) == (None, "if_required")
    assert always["customer_creation"] == "always"
    with httpx.Client() as browser:
        page = browser.get(guest["url"])
        assert 'name="email"' in page.text
        missing = browser.post(guest["url"], data={"card_number": "4242 4242 4242 4242"})
        assert missing.status_code == 400 and "Enter your email address." in missing.text
        paid = browser.post(guest["url"], data={"card_number": "4242424242424242", "email": "g@example.com"})
        assert paid.status_code == 303
        browser.post(always["url"], data={"card_number": "4242424242424242", "email": "a@example.com"})
    # if_required: a guest payment, no customer; always: a customer with the typed address.
    done = http.get(f"/v1/checkout/sessions/{guest['id']}").json()
    assert done["customer"] is None and done["customer_details"]["email"] == "g@example.com"
    intent = http.get(f"/v1/payment_intents/{done['payment_intent']}").json()
    assert intent["customer"] is None and intent["status"] == "succeeded"
    made = http.get(f"/v1/checkout/sessions/{always['id']}").json()
    assert made["customer"] and made["customer_details"]["email"] == "a@example.com"
    assert http.get(f"/v1/customers/{made['customer']}").json()["email"] == "a@example.com"


def test_a_declined_card_stays_on_the_hosted_page(standin: StripeStandin, http: httpx.Client) -> None:
    session = _open_session(http)
    with httpx.Client() as browser:
        declined = browser.post(session["url"], data={"card_number": "4000 0000 0000 0341"})
    assert declined.status_code == 402 and "Your card was declined." in declined.text
    assert 'value="4000 0000 0000 0341"' in declined.text
    assert http.get(f"/v1/checkout/sessions/{session['id']}").json()["status"] == "open"


def test_checkout_completion_emits_stripes_events_in_stripes_order(
    standin: StripeStandin, http: httpx.Client
) -> None:
    customer = http.post("/v1/customers", data={}).json()
    product = http.post("/v1/products", data={"name": "Pro"}).json()
    price = http.post(
        "/v1/prices",
        data={
            "product": product["id"],
            "unit_amount": "999",
            "currency": "usd",
            "recurring[interval]": "month",
        },
    ).json()
    session = http.post(
        "/v1/checkout/sessions",
        data={
            "mode": "subscription",
            "customer": customer["id"],
            "line_items[0][price]": price["id"],
            "line_items[0][quantity]": "1",
            "success_url": "https://example.com/ok",
        },
    ).json()
    assert session["status"] == "open" and session["url"] == f"{standin.base_url}/c/pay/{session['id']}"
    start = len(standin.events.log)
    done = http.post(f"/_standin/checkout/{session['id']}/complete").json()
    types = standin.events.types()[start:]
    assert types[-1] == "checkout.session.completed" and done["status"] == "complete"
    assert types.index("customer.subscription.created") < types.index("invoice.paid")
    assert types.index("invoice.paid") < len(types) - 1
    sub = http.get(
        f"/v1/subscriptions/{done['subscription']}", params={"expand[]": "default_payment_method"}
    ).json()
    assert sub["status"] == "active" and sub["default_payment_method"]["card"]["last4"] == "4242"
    updated = [e for e in standin.events.log[start:] if e["type"] == "customer.subscription.updated"][-1]
    assert updated["data"]["previous_attributes"]["status"] == "incomplete"


def test_the_life_cycle_helpers_move_stripes_truth(standin: StripeStandin, http: httpx.Client) -> None:
    customer = http.post("/v1/customers", data={}).json()
    product = http.post("/v1/products", data={"name": "Pro"}).json()
    price = http.post(
        "/v1/prices",
        data={
            "product": product["id"],
            "unit_amount": "999",
            "currency": "usd",
            "recurring[interval]": "month",
        },
    ).json()
    sub_id = http.post(
        "/v1/subscriptions",
        data={
            "customer": customer["id"],
            "items[0][price]": price["id"],
            "payment_behavior": "default_incomplete",
        },
    ).json()["id"]
    assert standin.pay_first_invoice(sub_id) is True
    end = standin.subscription(sub_id)["items"]["data"][0]["current_period_end"]
    standin.renew(sub_id)
    assert standin.subscription(sub_id)["items"]["data"][0]["current_period_start"] == end
    standin.fail_renewal(sub_id)
    assert standin.subscription(sub_id)["status"] == "past_due"
    assert standin.events.of_type("invoice.payment_failed")
    standin.recover(sub_id)
    assert standin.subscription(sub_id)["status"] == "active"
    standin.pause_collection(sub_id)
    assert standin.subscription(sub_id)["pause_collection"]["behavior"] == "void"
    standin.unpause_collection(sub_id)
    standin.pause(sub_id)
    standin.resume(sub_id)
    assert standin.events.of_type("customer.subscription.paused", "customer.subscription.resumed")
    refund = standin.refund(sub_id)
    assert refund["object"] == "refund" and standin.events.of_type("charge.refunded")
    standin.cancel_at_period_end(sub_id)
    standin.renew(sub_id)
    assert standin.subscription(sub_id)["status"] == "canceled"
    assert standin.events.log[-1]["type"] == "customer.subscription.deleted"
    listed = http.get("/v1/subscriptions").json()["data"]
    assert listed == [] and len(http.get("/v1/subscriptions", params={"status": "all"}).json()["data"]) == 1
    standin.delete_customer(customer["id"])
    assert http.get(f"/v1/customers/{customer['id']}").json() == {
        "id": customer["id"],
        "object": "customer",
        "deleted": True,
    }
    preview_source = json.dumps(standin.events.log[-1])
    assert "customer.deleted" in preview_source


def test_proration_previews_price_the_unused_time(standin: StripeStandin, http: httpx.Client) -> None:
    customer = http.post("/v1/customers", data={}).json()
    product = http.post("/v1/products", data={"name": "Pro"}).json()
    cheap, dear = (
        http.post(
            "/v1/prices",
            data={
                "product": product["id"],
                "unit_amount": str(amount),
                "currency": "usd",
                "recurring[interval]": "month",
            },
        ).json()
        for amount in (1000, 3000)
    )
    sub = http.post(
        "/v1/subscriptions", data={"customer": customer["id"], "items[0][price]": cheap["id"]}
    ).json()
    item = sub["items"]["data"][0]
    halfway = (item["current_period_start"] + item["current_period_end"]) // 2
    preview = http.post(
        "/v1/invoices/create_preview",
        data={
            "customer": customer["id"],
            "subscription": sub["id"],
            "subscription_details[items][0][id]": item["id"],
            "subscription_details[items][0][price]": dear["id"],
            "subscription_details[proration_behavior]": "always_invoice",
            "subscription_details[proration_date]": str(halfway),
        },
    ).json()
    assert preview["amount_due"] == pytest.approx(1000, abs=2)
    assert [line["amount"] < 0 for line in preview["lines"]["data"]] == [True, False]


@pytest.mark.parametrize(
    ("missing_payment_method", "status_after"),
    [("cancel", "canceled"), ("pause", "paused"), ("create_invoice", "past_due")],
)
def test_a_trial_waits_for_a_card_and_ends_as_its_settings_say(
    standin: StripeStandin, http: httpx.Client, missing_payment_method: str, status_after: str
) -> None:
    customer = http.post("/v1/customers", data={}).json()
    product = http.post("/v1/products", data={"name": "Pro"}).json()
    price = http.post(
        "/v1/prices",
        data={
            "product": product["id"],
            "unit_amount": "999",
            "currency": "usd",
            "recurring[interval]": "month",
        },
    ).json()
    trial_end = standin.now() + 3 * 86400
    sub = http.post(
        "/v1/subscriptions",
        data={
            "customer": customer["id"],
            "items[0][price]": price["id"],
            "payment_behavior": "default_incomplete",
            "trial_end": str(trial_end),
            "trial_settings[end_behavior][missing_payment_method]": missing_payment_method,
            "expand[]": ["latest_invoice.confirmation_secret", "pending_setup_intent"],
        },
    ).json()
    assert sub["status"] == "trialing" and sub["trial_end"] == trial_end
    assert sub["trial_start"] == sub["items"]["data"][0]["current_period_start"]
    assert sub["latest_invoice"]["amount_due"] == 0 and sub["latest_invoice"]["status"] == "paid"
    assert sub["latest_invoice"]["confirmation_secret"] is None
    setup = sub["pending_setup_intent"]
    assert setup["object"] == "setup_intent" and setup["status"] == "requires_payment_method"
    assert setup["client_secret"].startswith(f"{setup['id']}_secret_")
    assert sub["trial_settings"]["end_behavior"]["missing_payment_method"] == missing_payment_method
    standin.end_trial(sub["id"])
    assert standin.subscription(sub["id"])["status"] == status_after
    assert not [c for c in standin.state.all("charge") if c["paid"]]


def test_a_trial_card_added_through_the_setup_intent_pays_when_the_trial_ends(
    standin: StripeStandin, http: httpx.Client
) -> None:
    customer = http.post("/v1/customers", data={}).json()
    product = http.post("/v1/products", data={"name": "Pro"}).json()
    price = http.post(
        "/v1/prices",
        data={
            "product": product["id"],
            "unit_amount": "999",
            "currency": "usd",
            "recurring[interval]": "month",
        },
    ).json()
    sub = http.post(
        "/v1/subscriptions",
        data={
            "customer": customer["id"],
            "items[0][price]": price["id"],
            "payment_behavior": "default_incomplete",
            "payment_settings[save_default_payment_method]": "on_subscription",
            "trial_period_days": "7",
        },
    ).json()
    standin.add_trial_card(sub["id"])
    after = standin.subscription(sub["id"])
    assert after["pending_setup_intent"] is None and after["default_payment_method"].startswith("pm_")
    assert standin.events.of_type("setup_intent.succeeded")
    standin.end_trial(sub["id"])
    assert standin.subscription(sub["id"])["status"] == "active"
    assert [c["amount"] for c in standin.state.all("charge") if c["paid"]] == [999]


def _one_time_price(http: httpx.Client, amount: int = 499) -> tuple[str, str]:
    product = http.post("/v1/products", data={"name": "100 credits"}).json()
    price = http.post(
        "/v1/prices", data={"product": product["id"], "unit_amount": str(amount), "currency": "usd"}
    ).json()
    assert price["type"] == "one_time" and price["recurring"] is None
    customer = http.post("/v1/customers", data={"email": "once@example.com"}).json()
    return price["id"], customer["id"]


def test_payment_mode_checkout_charges_once_with_a_receipt(
    standin: StripeStandin, http: httpx.Client
) -> None:
    price, customer = _one_time_price(http)
    recurring = http.post(
        "/v1/prices",
        data={
            "product": standin.state.objects[price]["product"],
            "unit_amount": "999",
            "currency": "usd",
            "recurring[interval]": "month",
        },
    ).json()
    base = {"mode": "payment", "customer": customer, "success_url": "https://app.example.com/ok"}
    refused = http.post("/v1/checkout/sessions", data={**base, "line_items[0][price]": recurring["id"]})
    assert refused.status_code == 400 and "recurring price" in refused.json()["error"]["message"]
    session = http.post(
        "/v1/checkout/sessions",
        data={
            **base,
            "line_items[0][price]": price,
            "line_items[0][quantity]": "3",
            "invoice_creation[enabled]": "true",
            "payment_intent_data[metadata][entitle_product]": "credits_100",
        },
    ).json()
    assert session["amount_total"] == 1497 and session["payment_status"] == "unpaid"
    start = len(standin.events.log)
    paid = standin.complete_checkout(session["id"])
    assert paid["status"] == "complete" and paid["payment_status"] == "paid" and paid["invoice"]
    assert [t for t in standin.events.types()[start:] if not t.startswith(("payment_method", "invoice"))] == [
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
        "checkout.session.completed",
    ]
    intent = http.get(
        f"/v1/payment_intents/{paid['payment_intent']}", params={"expand[]": "latest_charge"}
    ).json()
    assert intent["status"] == "succeeded" and intent["amount_received"] == 1497
    assert intent["metadata"] == {"entitle_product": "credits_100"}
    assert intent["latest_charge"]["amount"] == 1497 and intent["latest_charge"]["paid"] is True
    assert http.get(f"/v1/invoices/{paid['invoice']}").json()["status"] == "paid"


def test_payment_intents_refunds_and_disputes(standin: StripeStandin, http: httpx.Client) -> None:
    _, customer = _one_time_price(http)
    intent = http.post(
        "/v1/payment_intents",
        data={
            "amount": "1000",
            "currency": "usd",
            "customer": customer,
            "metadata[entitle_product]": "pro_lifetime",
            "automatic_payment_methods[enabled]": "true",
        },
    ).json()
    assert intent["status"] == "requires_payment_method" and intent["client_secret"].startswith(intent["id"])
    assert intent["automatic_payment_methods"] == {"enabled": True}
    assert standin.confirm_payment_intent(intent["id"], card="0341") is False
    assert standin.payment_intent(intent["id"])["status"] == "requires_payment_method"
    assert standin.confirm_payment_intent(intent["id"]) is True
    assert standin.events.types()[-2:] == ["charge.succeeded", "payment_intent.succeeded"]

    partial = http.post("/v1/refunds", data={"payment_intent": intent["id"], "amount": "300"}).json()
    assert partial["amount"] == 300 and standin.events.types()[-2] == "charge.refunded"
    charge = standin.payment_intent(intent["id"])["latest_charge"]
    assert charge["amount_refunded"] == 300 and charge["refunded"] is False
    rest = http.post("/v1/refunds", data={"charge": charge["id"]}).json()
    assert rest["amount"] == 700 and standin.payment_intent(intent["id"])["latest_charge"]["refunded"] is True
    again = http.post("/v1/refunds", data={"charge": charge["id"]})
    assert again.status_code == 400 and again.json()["error"]["code"] == "charge_already_refunded"

    other = http.post(
        "/v1/payment_intents", data={"amount": "1000", "currency": "usd", "customer": customer}
    ).json()
    standin.confirm_payment_intent(other["id"])
    dispute = standin.open_dispute(other["id"])
    assert standin.events.types()[-2] == "charge.dispute.created" and dispute["status"] == "needs_response"
    assert standin.payment_intent(other["id"])["latest_charge"]["disputed"] is True
    listed = http.get("/v1/disputes", params={"payment_intent": other["id"]}).json()["data"]
    assert [d["id"] for d in listed] == [dispute["id"]]
    standin.close_dispute(dispute["id"], "won")
    assert standin.events.of_type("charge.dispute.closed")[-1]["data"]["object"]["status"] == "won"
    assert http.get(f"/v1/disputes/{dispute['id']}").json()["status"] == "won"


def _paid_monthly(standin: StripeStandin, http: httpx.Client) -> tuple[dict[str, Any], str]:
    customer = http.post("/v1/customers", data={}).json()
    product = http.post("/v1/products", data={"name": "Pro"}).json()
    price = http.post(
        "/v1/prices",
        data={
            "product": product["id"],
            "unit_amount": "3000",
            "currency": "usd",
            "recurring[interval]": "month",
        },
    ).json()
    sub_id = http.post(
        "/v1/subscriptions",
        data={
            "customer": customer["id"],
            "items[0][price]": price["id"],
            "payment_behavior": "default_incomplete",
        },
    ).json()["id"]
    assert standin.pay_first_invoice(sub_id) is True
    return customer, sub_id


def test_invoices_list_with_their_payments_pages_and_pdfs(standin: StripeStandin, http: httpx.Client) -> None:
    customer, sub_id = _paid_monthly(standin, http)
    standin.renew(sub_id)
    page = http.get("/v1/invoices", params={"customer": customer["id"], "limit": 1}).json()
    assert page["has_more"] is True and len(page["data"]) == 1
    newest = page["data"][0]
    assert newest["billing_reason"] == "subscription_cycle" and "payment_intent" not in newest
    assert "paid" not in newest and "charge" not in newest
    older = http.get(
        "/v1/invoices", params={"customer": customer["id"], "limit": 1, "starting_after": newest["id"]}
    ).json()
    assert older["has_more"] is False and older["data"][0]["billing_reason"] == "subscription_create"
    assert http.get(newest["hosted_invoice_url"]).status_code == 200
    pdf = http.get(newest["invoice_pdf"])
    assert pdf.headers["content-type"] == "application/pdf" and pdf.content.startswith(b"%PDF-")
    # The renewal found no saved card: open, and no payment; the first invoice was paid.
    assert newest["status"] == "open"
    assert http.get("/v1/invoice_payments", params={"invoice": newest["id"]}).json()["data"] == []
    first = older["data"][0]
    (payment,) = http.get("/v1/invoice_payments", params={"invoice": first["id"]}).json()["data"]
    assert payment["status"] == "paid" and payment["payment"]["type"] == "payment_intent"
    expanded = http.get(f"/v1/invoices/{first['id']}", params={"expand[]": "payments"}).json()
    assert expanded["payments"]["data"] == [payment]


def test_refunds_check_the_amount_and_keep_reason_and_metadata(
    standin: StripeStandin, http: httpx.Client
) -> None:
    customer, sub_id = _paid_monthly(standin, http)
    invoice = http.get("/v1/invoices", params={"customer": customer["id"]}).json()["data"][0]
    intent = http.get("/v1/invoice_payments", params={"invoice": invoice["id"]}).json()["data"][0]["payment"][
        "payment_intent"
    ]
    too_much = http.post("/v1/refunds", data={"payment_intent": intent, "amount": "3001"})
    assert too_much.status_code == 400 and too_much.json()["error"]["code"] == "amount_too_large"
    odd = http.post("/v1/refunds", data={"payment_intent": intent, "reason": "because"})
    assert odd.status_code == 400 and odd.json()["error"]["param"] == "reason"
    refund = http.post(
        "/v1/refunds",
        data={"payment_intent": intent, "amount": "1000", "reason": "duplicate", "metadata[ticket]": "7"},
    ).json()
    assert (refund["amount"], refund["reason"], refund["metadata"]) == (1000, "duplicate", {"ticket": "7"})
    assert standin.events.types()[-2:] == ["charge.refunded", "refund.created"]
    rest = http.post("/v1/refunds", data={"payment_intent": intent}).json()
    assert rest["amount"] == 2000
    again = http.post("/v1/refunds", data={"payment_intent": intent})
    assert again.json()["error"]["code"] == "charge_already_refunded"


def test_cancel_with_prorate_and_invoice_now_credits_the_unused_time(
    standin: StripeStandin, http: httpx.Client
) -> None:
    customer, sub_id = _paid_monthly(standin, http)
    item = standin.subscription(sub_id)["items"]["data"][0]
    standin.advance((item["current_period_end"] - item["current_period_start"]) // 2)
    canceled = http.delete(
        f"/v1/subscriptions/{sub_id}",
        params={"prorate": "true", "invoice_now": "true", "cancellation_details[comment]": "moving"},
    ).json()
    assert canceled["status"] == "canceled" and canceled["cancellation_details"]["comment"] == "moving"
    final = http.get(f"/v1/invoices/{canceled['latest_invoice']}").json()
    assert -1500 <= final["total"] <= -1400 and final["amount_due"] == 0 and final["status"] == "paid"
    assert http.get(f"/v1/customers/{customer['id']}").json()["balance"] == final["total"]
    assert "customer.subscription.deleted" in standin.events.types()
    assert http.delete(f"/v1/subscriptions/{sub_id}").status_code == 400
    # Without them nothing is credited: Stripe's default.
    other_customer, other = _paid_monthly(standin, http)
    plain = http.delete(f"/v1/subscriptions/{other}").json()
    assert plain["status"] == "canceled"
    assert http.get(f"/v1/customers/{other_customer['id']}").json()["balance"] == 0


def test_webhook_endpoints_each_deliver_signed_with_their_own_secret(
    standin: StripeStandin, http: httpx.Client
) -> None:
    received: list[tuple[str, bytes, str]] = []

    async def record(request: Request) -> Response:
        received.append((request.url.path, await request.body(), request.headers["stripe-signature"]))
        return Response(status_code=200)

    receiver = ServerThread(Starlette(routes=[Route("/{name}", record, methods=["POST"])]))
    receiver.start()
    try:
        base = f"http://127.0.0.1:{receiver.port}"
        made = [
            http.post(
                "/v1/webhook_endpoints",
                data={"url": f"{base}/{name}", "enabled_events[0]": "customer.deleted"},
            ).json()
            for name in ("a", "b", "c")
        ]
        a, b, c = made
        assert len({e["secret"] for e in made}) == 3 and a["object"] == "webhook_endpoint"
        listed = http.get("/v1/webhook_endpoints").json()["data"]
        assert all("secret" not in e for e in listed) and len(listed) == 3
        # Updating its events changes what the endpoint hears; it never gains a second copy of itself.
        updated = http.post(
            f"/v1/webhook_endpoints/{a['id']}",
            data={"enabled_events[0]": "customer.created", "enabled_events[1]": "customer.deleted"},
        ).json()
        assert updated["enabled_events"] == ["customer.created", "customer.deleted"]
        assert http.post(f"/v1/webhook_endpoints/{b['id']}", data={"disabled": "true"}).json()["status"] == (
            "disabled"
        )
        deleted = http.delete(f"/v1/webhook_endpoints/{c['id']}").json()
        assert deleted == {"id": c["id"], "object": "webhook_endpoint", "deleted": True}
        assert http.get(f"/v1/webhook_endpoints/{c['id']}").status_code == 404
        customer = http.post("/v1/customers", data={"name": "x"}).json()
        http.delete(f"/v1/customers/{customer['id']}")
        standin.events.wait_delivered()
    finally:
        receiver.stop()
    assert [(path, json.loads(body)["type"]) for path, body, _ in received] == [
        ("/a", "customer.created"),
        ("/a", "customer.deleted"),
    ]
    for _, body, signature in received:
        stripe.Webhook.construct_event(body, signature, a["secret"])
        with pytest.raises(stripe.SignatureVerificationError):
            stripe.Webhook.construct_event(body, signature, b["secret"])


def test_keys_are_checked_as_stripe_checks_them(standin: StripeStandin) -> None:
    wrong = httpx.get(
        f"{standin.base_url}/v1/balance", headers={"Authorization": "Bearer sk_test_abcdefgh1234"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == {
        "type": "invalid_request_error",
        "message": "Invalid API Key provided: sk_test_********1234",
    }
    live = standin.add_key("sk_live_0123456789", livemode=True)
    balance = httpx.get(f"{standin.base_url}/v1/balance", headers={"Authorization": f"Bearer {live}"}).json()
    assert balance["object"] == "balance" and balance["livemode"] is True
    restricted = standin.add_key("rk_test_0123456789", permissions={"rak_balance_read"})
    headers = {"Authorization": f"Bearer {restricted}"}
    assert httpx.get(f"{standin.base_url}/v1/balance", headers=headers).status_code == 200
    refused = httpx.get(f"{standin.base_url}/v1/customers", headers=headers)
    assert refused.status_code == 403
    assert "Having the 'rak_customer_read' permission" in refused.json()["error"]["message"]
