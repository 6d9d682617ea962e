"""Checkout Sessions in subscription mode, and the test helper that pays one like a person would."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .customers import create_customer, live_customer, make_card
from .subscriptions import settle, start_subscription
from .wire import StandinError, as_bool, as_int, as_list, list_page, new_id, require

if TYPE_CHECKING:
    from .state import State

SESSION_LIFETIME = 24 * 3600


def create_session(state: State, params: dict[str, Any]) -> dict[str, Any]:
    mode = require(params, "mode")
    if mode != "subscription":
        raise StandinError(400, "The stand-in only implements mode=subscription.", param="mode")
    line_items = as_list(require(params, "line_items"))
    price = state.get(require(line_items[0], "price"), "price")
    if not price["recurring"]:
        raise StandinError(
            400, "You must specify at least one recurring price in `subscription` mode.", param="line_items"
        )
    customer_id = params.get("customer")
    if customer_id:
        live_customer(state, customer_id)
    ui_mode = params.get("ui_mode", "hosted")
    if ui_mode == "hosted":
        require(params, "success_url")
    now = state.now()
    session = state.add(
        {
            "id": new_id("cs_test", 58),
            "object": "checkout.session",
            "allow_promotion_codes": as_bool(params["allow_promotion_codes"], "allow_promotion_codes")
            if "allow_promotion_codes" in params
            else None,
            "amount_subtotal": price["unit_amount"],
            "amount_total": price["unit_amount"],
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "currency": price["currency"],
            "customer": customer_id,
            "customer_creation": None if customer_id else "always",
            "customer_details": None,
            "customer_email": params.get("customer_email"),
            "expires_at": now + SESSION_LIFETIME,
            "invoice": None,
            "locale": params.get("locale"),
            "metadata": params.get("metadata") or {},
            "mode": mode,
            "payment_intent": None,
            "payment_method_collection": params.get("payment_method_collection", "always"),
            "payment_method_types": ["card", "link"],
            "payment_status": "unpaid",
            "status": "open",
            "subscription": None,
            "success_url": params.get("success_url"),
            "ui_mode": ui_mode,
            "url": None,
            "_subscription_data": params.get("subscription_data") or {},
            "_hidden": {
                "line_items": {
                    "object": "list",
                    "has_more": False,
                    "url": "",
                    "data": [
                        {
                            "id": new_id("li", 24),
                            "object": "item",
                            "amount_subtotal": price["unit_amount"],
                            "amount_total": price["unit_amount"],
                            "currency": price["currency"],
                            "description": price.get("nickname") or price["id"],
                            "price": price["id"],
                            "quantity": as_int(line_items[0].get("quantity", 1), "line_items[0][quantity]"),
                        }
                    ],
                }
            },
        },
    )
    # Stripe's page is at checkout.stripe.com; the stand-in serves its own (`hosted`) where it answers.
    session["url"] = f"{state.base_url}/c/pay/{session['id']}"
    session["_hidden"]["line_items"]["url"] = f"/v1/checkout/sessions/{session['id']}/line_items"
    return state.render(session, as_list(params.get("expand")))


def retrieve_session(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    return state.render(
        state.get(id, "checkout.session", label="checkout.session"), as_list(params.get("expand"))
    )


def list_sessions(state: State, params: dict[str, Any]) -> dict[str, Any]:
    sessions = [
        s
        for s in state.all("checkout.session")
        if (not params.get("customer") or s["customer"] == params["customer"])
        and (not params.get("status") or s["status"] == params["status"])
    ]
    return list_page(sessions, params, "/v1/checkout/sessions", lambda s: state.render(s))


def list_line_items(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    session = state.get(id, "checkout.session", label="checkout.session")
    items = session["_hidden"]["line_items"]["data"]
    return list_page(items, params, f"/v1/checkout/sessions/{id}/line_items", lambda i: state.render(i))


def complete_session(state: State, session: dict[str, Any], last4: str = "4242") -> dict[str, Any]:
    """What Stripe does when a person pays on the hosted page (the card must not decline)."""
    if session["status"] != "open":
        raise StandinError(400, f"Checkout Session {session['id']} is {session['status']}.")
    if session["customer"]:
        customer = live_customer(state, session["customer"])
    else:
        customer = state.objects[create_customer(state, {"email": session["customer_email"]})["id"]]
    pm = make_card(state, customer["id"], last4)
    if last4 == "0341":
        # A declined card keeps the person on the payment page; nothing is created.
        raise StandinError(
            402,
            "Your card was declined.",
            type="card_error",
            code="card_declined",
            decline_code="generic_decline",
        )
    state.emit("payment_method.attached", pm)
    item = session["_hidden"]["line_items"]["data"][0]
    data = session["_subscription_data"]
    trial = data.get("trial_period_days")
    trial_end = data.get("trial_end")
    sub = start_subscription(
        state,
        customer,
        state.objects[item["price"]],
        quantity=item["quantity"],
        metadata=data.get("metadata") or {},
        payment_behavior="default_incomplete",
        save_default_payment_method="on_subscription",
        trial_days=int(trial) if trial else None,
        trial_end=int(trial_end) if trial_end else None,
        trial_settings=data.get("trial_settings"),
    )
    invoice = state.objects[sub["latest_invoice"]]
    if invoice["status"] == "open":
        settle(state, sub, invoice, pm["id"])
    elif sub["default_payment_method"] is None:
        before = state.snapshot(sub)
        sub["default_payment_method"] = pm["id"]
        state.emit("customer.subscription.updated", sub, before)
    session.update(
        customer=customer["id"],
        customer_details={
            "email": customer["email"],
            "name": customer["name"],
            "address": None,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
        invoice=invoice["id"],
        payment_status="paid" if invoice["amount_due"] else "no_payment_required",
        status="complete",
        subscription=sub["id"],
        url=None,
    )
    state.emit("checkout.session.completed", session)
    return session


def expire_session(state: State, session: dict[str, Any]) -> None:
    if session["status"] == "open":
        session.update(status="expired", url=None)
        state.emit("checkout.session.expired", session)


def complete_route(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    session = state.get(id, "checkout.session", label="checkout.session")
    return state.render(complete_session(state, session, params.get("card", "4242")))


def expire_route(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    session = state.get(id, "checkout.session", label="checkout.session")
    expire_session(state, session)
    return state.render(session)


ROUTES = [
    ("POST", "/v1/checkout/sessions", create_session),
    ("GET", "/v1/checkout/sessions", list_sessions),
    ("GET", "/v1/checkout/sessions/{id}", retrieve_session),
    ("GET", "/v1/checkout/sessions/{id}/line_items", list_line_items),
    ("POST", "/v1/checkout/sessions/{id}/expire", expire_route),
    # Not Stripe's API: the stand-in's way for a test to play the paying person.
    ("POST", "/_standin/checkout/{id}/complete", complete_route),
]
