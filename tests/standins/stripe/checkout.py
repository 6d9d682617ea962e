"""Checkout Sessions in subscription and payment mode, and the test helper that pays one like a person
would. Payment mode sells one-time prices: paying creates a PaymentIntent (carrying
`payment_intent_data.metadata`) with its charge, and, with `invoice_creation[enabled]`, a paid invoice as
the receipt."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import promotions
from .billing import record_invoice_payment, set_invoice_urls
from .customers import create_customer, live_customer, make_card
from .payments import charge_intent, new_payment_intent
from .subscriptions import settle, start_subscription
from .tax import DEFAULT_ADDRESS, tax_on, total_taxes
from .wire import StandinError, as_bool, as_int, as_list, list_page, new_id, require

if TYPE_CHECKING:
    from .state import State

SESSION_LIFETIME = 24 * 3600


def create_session(state: State, params: dict[str, Any]) -> dict[str, Any]:
    mode = require(params, "mode")
    if mode not in ("subscription", "payment"):
        raise StandinError(
            400, "The stand-in only implements mode=subscription and mode=payment.", param="mode"
        )
    line_items = as_list(require(params, "line_items"))
    price = state.get(require(line_items[0], "price"), "price")
    if mode == "subscription" and not price["recurring"]:
        raise StandinError(
            400, "You must specify at least one recurring price in `subscription` mode.", param="line_items"
        )
    if mode == "payment" and price["recurring"]:
        raise StandinError(
            400,
            "You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode "
            "or use only one-time prices.",
            param="line_items",
        )
    if mode == "subscription" and ("payment_intent_data" in params or "invoice_creation" in params):
        raise StandinError(
            400,
            "`payment_intent_data` and `invoice_creation` can only be used in `payment` mode.",
            param="mode",
        )
    quantity = as_int(line_items[0].get("quantity", 1), "line_items[0][quantity]")
    if quantity < 1:
        raise StandinError(400, "Quantity must be at least 1.", param="line_items[0][quantity]")
    total = price["unit_amount"] * quantity
    customer_id = params.get("customer")
    if customer_id:
        live_customer(state, customer_id)
    taxed = as_bool((params.get("automatic_tax") or {}).get("enabled", "false"), "automatic_tax[enabled]")
    customer_update = params.get("customer_update") or {}
    if customer_update and not customer_id:
        raise StandinError(
            400, "`customer_update` can only be used with `customer`.", param="customer_update"
        )
    if (
        taxed
        and customer_id
        and customer_update.get("address") != "auto"
        and not (state.objects[customer_id].get("address") or {}).get("country")
    ):
        raise StandinError(
            400,
            "Automatic tax calculation requires a valid address on the Customer. Add a valid address to the "
            "Customer or set either `customer_update[address]` to 'auto' or `customer_update[shipping]` to "
            "'auto' to save the address entered in Checkout to the Customer.",
            param="customer_update[address]",
        )
    customer_creation = _customer_creation(params, mode, customer_id)
    if params.get("discounts") and "allow_promotion_codes" in params:
        raise StandinError(
            400, "You may only specify one of these parameters: allow_promotion_codes, discounts."
        )
    asked = promotions.resolve(
        state,
        params.get("discounts"),
        customer=customer_id,
        amount=total,
        currency=price["currency"],
        product=price["product"],
    )
    discount = sum(promotions.discount_off(coupon, total, price["currency"]) for coupon, _ in asked)
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
            # Until the buyer's address is known Stripe cannot compute the tax (`requires_location_inputs`).
            "automatic_tax": {
                "enabled": taxed,
                "liability": {"type": "self"} if taxed else None,
                "status": "requires_location_inputs" if taxed else None,
            },
            "billing_address_collection": params.get("billing_address_collection"),
            "tax_id_collection": {
                "enabled": as_bool(
                    (params.get("tax_id_collection") or {}).get("enabled", "false"),
                    "tax_id_collection[enabled]",
                ),
                "required": "never",
            },
            "_customer_update": customer_update,
            "amount_subtotal": total,
            "amount_total": total - discount,
            "cancel_url": params.get("cancel_url"),
            "client_reference_id": params.get("client_reference_id"),
            "currency": price["currency"],
            "customer": customer_id,
            "customer_creation": customer_creation,
            "customer_details": None,
            "customer_email": params.get("customer_email"),
            "discounts": promotions.session_discounts(asked),
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
            "total_details": {"amount_discount": discount, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": ui_mode,
            "url": None,
            "_subscription_data": params.get("subscription_data") or {},
            "_asked": asked,
            "_payment_intent_data": params.get("payment_intent_data") or {},
            "_invoice_creation": as_bool(
                (params.get("invoice_creation") or {}).get("enabled", "false"), "invoice_creation[enabled]"
            ),
            "_hidden": {
                "line_items": {
                    "object": "list",
                    "has_more": False,
                    "url": "",
                    "data": [
                        {
                            "id": new_id("li", 24),
                            "object": "item",
                            "amount_discount": discount,
                            "amount_subtotal": total,
                            "amount_total": total - discount,
                            "currency": price["currency"],
                            "description": price.get("nickname") or price["id"],
                            "price": price["id"],
                            "quantity": quantity,
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


def _customer_creation(params: dict[str, Any], mode: str, customer_id: str | None) -> str | None:
    """Stripe's `customer_creation`: only in payment mode, never beside `customer`; a session without a
    customer makes one when paid in subscription mode always, in payment mode only when `always`."""
    given = params.get("customer_creation")
    if given is not None:
        if mode != "payment":
            raise StandinError(
                400,
                "`customer_creation` can only be used in `payment` and `setup` mode.",
                param="customer_creation",
            )
        if customer_id:
            raise StandinError(
                400,
                "You may only specify one of these parameters: customer, customer_creation.",
                param="customer_creation",
            )
        if given not in ("always", "if_required"):
            raise StandinError(
                400,
                "Invalid customer_creation: must be one of always or if_required",
                param="customer_creation",
            )
        return str(given)
    if customer_id:
        return None
    return "if_required" if mode == "payment" else "always"


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


def complete_session(
    state: State,
    session: dict[str, Any],
    last4: str = "4242",
    address: dict[str, Any] | None = None,
    *,
    email: str | None = None,
) -> dict[str, Any]:
    """What Stripe does when a person pays on the hosted page (the card must not decline); `address` is
    what they type when the page asks for a billing address (a default one when a test does not say).
    A session without a customer asks for the email (`email`, what the person typed): Stripe makes a
    customer with it, except in payment mode without `customer_creation=always` (a guest: only
    `customer_details` keeps the address)."""
    if session["status"] != "open":
        raise StandinError(400, f"Checkout Session {session['id']} is {session['status']}.")
    typed = session["customer_email"] or (email or "").strip() or None
    customer: dict[str, Any] | None
    if session["customer"]:
        customer = live_customer(state, session["customer"])
    else:
        if typed is None:
            raise StandinError(400, "Enter your email address.", param="email")
        if session["mode"] == "payment" and session["customer_creation"] != "always":
            customer = None
        else:
            customer = state.objects[create_customer(state, {"email": typed})["id"]]
    _take_address(state, session, customer, address)
    if customer is None:
        pm = make_card(state, None, last4)
        return _complete_payment(state, session, None, pm["id"], typed) if last4 != "0341" else _declined()
    data = session["_subscription_data"]
    if (
        session["mode"] == "subscription"
        and session["payment_method_collection"] == "if_required"
        and (data.get("trial_period_days") or data.get("trial_end"))
    ):
        # Nothing is due today, so Stripe's page asks for no payment method at all.
        return _complete_subscription(state, session, customer, None)
    pm = make_card(state, customer["id"], last4)
    if last4 == "0341":
        _declined()
    state.emit("payment_method.attached", pm)
    if session["mode"] == "payment":
        return _complete_payment(state, session, customer, pm["id"])
    return _complete_subscription(state, session, customer, pm)


def _declined() -> dict[str, Any]:
    # A declined card keeps the person on the payment page; nothing is created.
    raise StandinError(
        402,
        "Your card was declined.",
        type="card_error",
        code="card_declined",
        decline_code="generic_decline",
    )


def _complete_subscription(
    state: State, session: dict[str, Any], customer: dict[str, Any], pm: dict[str, Any] | None
) -> dict[str, Any]:
    """The subscription Checkout starts; without `pm` (`payment_method_collection=if_required` with a
    trial) it starts trialing with no payment method, and `trial_settings` decide what its end does."""
    item = session["_hidden"]["line_items"]["data"][0]
    data = session["_subscription_data"]
    trial = data.get("trial_period_days")
    trial_end = data.get("trial_end")
    redeemed = promotions.redeem(state, session["_asked"], customer=customer["id"])
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
        automatic_tax=session["automatic_tax"]["enabled"],
        discounts=redeemed,
        # Checkout collected nothing to confirm: no SetupIntent is left pending.
        setup_intent=pm is not None,
    )
    invoice = state.objects[sub["latest_invoice"]]
    if pm is not None and invoice["status"] == "open":
        settle(state, sub, invoice, pm["id"])
    elif pm is not None and sub["default_payment_method"] is None:
        before = state.snapshot(sub)
        sub["default_payment_method"] = pm["id"]
        state.emit("customer.subscription.updated", sub, before)
    session.update(
        customer=customer["id"],
        customer_details=_customer_details(customer),
        invoice=invoice["id"],
        payment_status="paid" if invoice["amount_due"] else "no_payment_required",
        status="complete",
        subscription=sub["id"],
        url=None,
    )
    state.emit("checkout.session.completed", session)
    return session


def _take_address(
    state: State, session: dict[str, Any], customer: dict[str, Any] | None, address: dict[str, Any] | None
) -> None:
    """The billing address typed on the page: saved on the customer (`customer_update[address]=auto`,
    or a customer Checkout created), and the session's tax computed from it."""
    if session["billing_address_collection"] == "required" or session["automatic_tax"]["enabled"]:
        address = {**DEFAULT_ADDRESS, **(address or {})}
        saves = session["_customer_update"].get("address") == "auto" or not session["customer"]
        if customer is not None and saves:
            before = state.snapshot(customer)
            customer["address"] = address
            state.emit("customer.updated", customer, before)
        session["_address"] = address
    if session["automatic_tax"]["enabled"]:
        # A guest paying without a customer is taxed at the address typed on the page.
        taxed_at = customer.get("address") if customer is not None else session.get("_address")
        taxable = session["amount_subtotal"] - session["total_details"]["amount_discount"]
        tax = tax_on(taxable, taxed_at)
        session["automatic_tax"]["status"] = "complete"
        session["total_details"]["amount_tax"] = tax
        session["amount_total"] = taxable + tax


def _customer_details(customer: dict[str, Any]) -> dict[str, Any]:
    return {
        "email": customer["email"],
        "name": customer["name"],
        "address": customer.get("address"),
        "phone": None,
        "tax_exempt": "none",
        "tax_ids": [],
    }


def _complete_payment(
    state: State,
    session: dict[str, Any],
    customer: dict[str, Any] | None,
    pm_id: str,
    email: str | None = None,
) -> dict[str, Any]:
    """Payment mode: one PaymentIntent for the session's total, charged now; a paid invoice as the receipt
    when `invoice_creation` asked for one. Stripe's order: charge, payment intent, then the session.
    Without a customer (a guest), only `customer_details` names who paid."""
    item = session["_hidden"]["line_items"]["data"][0]
    data = session["_payment_intent_data"]
    customer_id = customer["id"] if customer is not None else None
    intent = new_payment_intent(
        state,
        amount=session["amount_total"],
        currency=session["currency"],
        customer=customer_id,
        metadata=data.get("metadata") or {},
        description=data.get("description"),
    )
    if not charge_intent(state, intent, pm_id):
        raise StandinError(402, "Your card was declined.", type="card_error", code="card_declined")
    promotions.redeem(state, session["_asked"], customer=customer_id, checkout_session=session["id"])
    invoice_id = (
        _receipt_invoice(state, session, customer_id, intent, item)
        if session["_invoice_creation"] and customer_id is not None
        else None
    )
    details = (
        _customer_details(customer)
        if customer is not None
        else _customer_details({"email": email, "name": None})
    )
    session.update(
        customer=customer_id,
        customer_details=details,
        invoice=invoice_id,
        payment_intent=intent["id"],
        payment_status="paid",
        status="complete",
        url=None,
    )
    state.emit("checkout.session.completed", session)
    return session


def _receipt_invoice(
    state: State, session: dict[str, Any], customer_id: str, intent: dict[str, Any], item: dict[str, Any]
) -> str:
    now = state.now()
    invoice = state.add(
        {
            "object": "invoice",
            "account_country": "US",
            "amount_due": intent["amount"],
            "amount_paid": intent["amount"],
            "amount_remaining": 0,
            "attempt_count": 0,
            "attempted": True,
            "auto_advance": False,
            "billing_reason": "manual",
            "collection_method": "charge_automatically",
            "currency": intent["currency"],
            "customer": customer_id,
            "default_payment_method": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "lines": {"object": "list", "data": [], "has_more": False, "url": ""},
            "next_payment_attempt": None,
            "number": None,
            "parent": None,
            "period_end": now,
            "period_start": now,
            "status": "paid",
            "status_transitions": {
                "finalized_at": now,
                "marked_uncollectible_at": None,
                "paid_at": now,
                "voided_at": None,
            },
            "subtotal": session["amount_subtotal"],
            "total": intent["amount"],
            "total_excluding_tax": session["amount_subtotal"] - session["total_details"]["amount_discount"],
            "total_taxes": total_taxes(
                session["total_details"]["amount_tax"],
                session["amount_subtotal"] - session["total_details"]["amount_discount"],
            ),
            "total_discount_amounts": [
                {"amount": session["total_details"]["amount_discount"], "discount": d}
                for d in (session["discounts"] or [])[:1]
                if session["total_details"]["amount_discount"] > 0
            ],
        },
        "in",
    )
    invoice["number"] = f"STANDIN-{invoice['_seq']:04d}"
    set_invoice_urls(state, invoice)
    record_invoice_payment(state, invoice, intent["id"])
    invoice["lines"]["url"] = f"/v1/invoices/{invoice['id']}/lines"
    invoice["lines"]["data"] = [
        {
            "id": new_id("il"),
            "object": "line_item",
            "amount": intent["amount"],
            "currency": intent["currency"],
            "description": item["description"],
            "invoice": invoice["id"],
            "livemode": False,
            "metadata": {},
            "period": {"start": now, "end": now},
            "pricing": {"type": "price_details", "price_details": {"price": item["price"], "product": None}},
            "quantity": item["quantity"],
            "subscription": None,
        }
    ]
    # Paid out of band by the session's PaymentIntent; nothing is left to confirm.
    invoice["_hidden"] = {"confirmation_secret": None}
    state.emit("invoice.finalized", invoice)
    state.emit("invoice.paid", invoice)
    return str(invoice["id"])


def expire_session(state: State, session: dict[str, Any]) -> None:
    if session["status"] == "open":
        session.update(status="expired", url=None)
        state.emit("checkout.session.expired", session)


def complete_route(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    session = state.get(id, "checkout.session", label="checkout.session")
    return state.render(
        complete_session(
            state, session, params.get("card", "4242"), params.get("address"), email=params.get("email")
        )
    )


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
