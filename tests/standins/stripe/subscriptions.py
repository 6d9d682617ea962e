"""Subscriptions: their life cycle and the API that drives it.

Since API version 2025-03-31 (basil) the billing period lives on each subscription item
(`items.data[].current_period_start/end`), not on the subscription, and invoices point at their
subscription through `parent.subscription_details.subscription`; the stand-in answers only that way.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import promotions
from .billing import attempt_payment, open_invoice, void_invoice
from .catalog import _merge_metadata
from .customers import live_customer
from .tax import require_location
from .wire import StandinError, as_bool, as_int, as_list, list_page, missing, new_id, require

if TYPE_CHECKING:
    from .state import State

ENDED = ("canceled", "incomplete_expired")


def add_interval(ts: int, recurring: dict[str, Any]) -> int:
    count = int(recurring.get("interval_count") or 1)
    interval = recurring["interval"]
    if interval in ("day", "week"):
        return ts + count * (86400 if interval == "day" else 7 * 86400)
    months = count * (12 if interval == "year" else 1)
    start = datetime.fromtimestamp(ts, UTC)
    year, month = divmod(start.month - 1 + months, 12)
    day = min(start.day, calendar.monthrange(start.year + year, month + 1)[1])
    return int(start.replace(year=start.year + year, month=month + 1, day=day).timestamp())


def item_of(sub: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = sub["items"]["data"][0]
    return item


def payment_method_for(state: State, sub: dict[str, Any]) -> str | None:
    customer = state.objects[sub["customer"]]
    pm: str | None = sub["default_payment_method"] or customer["invoice_settings"]["default_payment_method"]
    return pm


def start_subscription(
    state: State,
    customer: dict[str, Any],
    price: dict[str, Any],
    *,
    quantity: int = 1,
    metadata: dict[str, str] | None = None,
    payment_behavior: str = "allow_incomplete",
    save_default_payment_method: str = "off",
    trial_days: int | None = None,
    trial_end: int | None = None,
    trial_settings: dict[str, Any] | None = None,
    payment_method: str | None = None,
    charge_with: str | None = None,
    setup_intent: bool = True,
    automatic_tax: bool = False,
    discounts: list[str] | None = None,
) -> dict[str, Any]:
    """Create `sub` with its first invoice; charge `charge_with` unless the payment is left to the client.

    A trial (`trial_end`, or `trial_days` from now) starts `trialing` with a $0 first invoice; left to
    the client (`default_incomplete`) with no card, it carries a `pending_setup_intent` that saves one.
    """
    now = state.now()
    if trial_end is None and trial_days:
        trial_end = now + trial_days * 86400
    missing_pm = ((trial_settings or {}).get("end_behavior") or {}).get("missing_payment_method")
    period_end = trial_end or add_interval(now, price["recurring"])
    sub = state.add(
        {
            "object": "subscription",
            "application": None,
            "automatic_tax": {
                "enabled": automatic_tax,
                "liability": {"type": "self"} if automatic_tax else None,
                "disabled_reason": None,
            },
            "billing_cycle_anchor": period_end if trial_end else now,
            "billing_mode": {"type": "classic"},
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically",
            "currency": price["currency"],
            "customer": customer["id"],
            "days_until_due": None,
            "default_payment_method": payment_method,
            "description": None,
            "discounts": list(discounts or []),
            "ended_at": None,
            "items": {"object": "list", "data": [], "has_more": False, "url": ""},
            "latest_invoice": None,
            "metadata": metadata or {},
            "pause_collection": None,
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": save_default_payment_method,
            },
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": None,
            "start_date": now,
            "status": "trialing" if trial_end else "incomplete",
            "test_clock": None,
            "trial_end": trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": missing_pm or "create_invoice"}},
            "trial_start": now if trial_end else None,
        },
        "sub",
    )
    sub["items"]["url"] = f"/v1/subscription_items?subscription={sub['id']}"
    for discount_id in sub["discounts"]:
        state.objects[discount_id]["subscription"] = sub["id"]
    sub["items"]["data"] = [
        {
            "id": new_id("si", 14),
            "object": "subscription_item",
            "created": now,
            "current_period_end": period_end,
            "current_period_start": now,
            "discounts": [],
            "metadata": {},
            "price": price["id"],
            "quantity": quantity,
            "subscription": sub["id"],
            "tax_rates": [],
        }
    ]
    amount = 0 if trial_end else price["unit_amount"] * quantity
    line = (f"{quantity} × {price['id']}", amount, price["id"], now, period_end)
    state.emit("customer.subscription.created", sub)
    invoice = open_invoice(state, sub, lines=[line], billing_reason="subscription_create")
    before = state.snapshot(sub)
    sub["latest_invoice"] = invoice["id"]
    if invoice["status"] == "paid" and not trial_end:
        sub["status"] = "active"
    if trial_end and payment_behavior == "default_incomplete" and payment_method is None and setup_intent:
        sub["pending_setup_intent"] = create_setup_intent(state, customer["id"])["id"]
    state.emit("customer.subscription.updated", sub, before)
    charge_with = charge_with or payment_method
    if payment_behavior != "default_incomplete" and invoice["status"] == "open" and charge_with:
        settle(state, sub, invoice, charge_with)
    return sub


def create_setup_intent(state: State, customer_id: str) -> dict[str, Any]:
    """A SetupIntent that saves a card for later, off-session charges (a trial's first invoice)."""
    intent = state.add(
        {
            "object": "setup_intent",
            "application": None,
            "automatic_payment_methods": None,
            "cancellation_reason": None,
            "customer": customer_id,
            "description": None,
            "last_setup_error": None,
            "latest_attempt": None,
            "mandate": None,
            "metadata": {},
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": None,
            "payment_method_types": ["card"],
            "single_use_mandate": None,
            "status": "requires_payment_method",
            "usage": "off_session",
        },
        "seti",
    )
    intent["client_secret"] = f"{intent['id']}_secret_{new_id('s', 24)[2:]}"
    state.emit("setup_intent.created", intent)
    return intent


def confirm_setup_intent(state: State, sub: dict[str, Any], pm_id: str) -> None:
    """Stripe.js confirms the trial's SetupIntent with a card: it becomes the subscription's default."""
    intent = state.get(sub["pending_setup_intent"], "setup_intent")
    intent.update(status="succeeded", payment_method=pm_id)
    state.emit("setup_intent.succeeded", intent)
    before = state.snapshot(sub)
    sub["pending_setup_intent"] = None
    if sub["payment_settings"]["save_default_payment_method"] == "on_subscription":
        sub["default_payment_method"] = pm_id
    state.emit("customer.subscription.updated", sub, before)


def settle(state: State, sub: dict[str, Any], invoice: dict[str, Any], pm_id: str | None) -> bool:
    """Attempt payment of `invoice` and move `sub` where Stripe would; True when paid."""
    before = state.snapshot(sub)
    paid = attempt_payment(state, invoice, pm_id)
    if paid:
        if sub["status"] in ("incomplete", "past_due", "unpaid", "trialing"):
            sub["status"] = "active"
        if sub["payment_settings"]["save_default_payment_method"] == "on_subscription" and pm_id:
            sub["default_payment_method"] = pm_id
    elif sub["status"] in ("active", "trialing"):
        sub["status"] = "past_due"
    if state.snapshot(sub) != before:
        state.emit("customer.subscription.updated", sub, before)
    return paid


def renew(state: State, sub: dict[str, Any]) -> None:
    """Advance the clock to the period end and do what Stripe does there."""
    item = item_of(sub)
    end = item["current_period_end"]
    if state.now() < end:
        state.advance(end - state.now())
    if sub["cancel_at_period_end"] or (sub["cancel_at"] and sub["cancel_at"] <= end):
        end_subscription(state, sub, "cancellation_requested")
        return
    if sub["status"] not in ("active", "trialing", "past_due"):
        raise StandinError(400, f"A {sub['status']} subscription does not renew.")
    price = state.objects[item["price"]]
    pm_id = payment_method_for(state, sub)
    if sub["status"] == "trialing" and pm_id is None:
        behavior = sub["trial_settings"]["end_behavior"]["missing_payment_method"]
        if behavior == "pause":
            pause(state, sub)
            return
        if behavior == "cancel":
            end_subscription(state, sub, "cancellation_requested")
            return
    before = state.snapshot(sub)
    item["current_period_start"] = end
    item["current_period_end"] = add_interval(end, price["recurring"])
    line = (
        f"{item['quantity']} × {price['id']}",
        price["unit_amount"] * item["quantity"],
        price["id"],
        end,
        item["current_period_end"],
    )
    invoice = open_invoice(state, sub, lines=[line], billing_reason="subscription_cycle")
    sub["latest_invoice"] = invoice["id"]
    if sub["pause_collection"]:
        void_invoice(state, invoice)
        state.emit("customer.subscription.updated", sub, before)
        return
    state.emit("customer.subscription.updated", sub, before)
    settle(state, sub, invoice, pm_id)


def end_subscription(state: State, sub: dict[str, Any], reason: str = "cancellation_requested") -> None:
    now = state.now()
    sub["status"] = "canceled"
    sub["ended_at"] = now
    sub["canceled_at"] = sub["canceled_at"] or now
    sub["cancellation_details"]["reason"] = reason
    state.emit("customer.subscription.deleted", sub)


def pause(state: State, sub: dict[str, Any]) -> None:
    """Status `paused`: a trial ended without a payment method and the trial settings say pause."""
    before = state.snapshot(sub)
    sub["status"] = "paused"
    state.emit("customer.subscription.paused", sub)
    state.emit("customer.subscription.updated", sub, before)


def proration_lines(
    state: State, sub: dict[str, Any], new_price: dict[str, Any], at: int
) -> list[tuple[str, int, str | None, int, int]]:
    item = item_of(sub)
    old_price = state.objects[item["price"]]
    start, end = item["current_period_start"], item["current_period_end"]
    at = min(max(at, start), end)
    fraction = (end - at) / (end - start)
    qty = item["quantity"]
    return [
        (
            f"Unused time on {old_price['id']}",
            -round(old_price["unit_amount"] * qty * fraction),
            old_price["id"],
            at,
            end,
        ),
        (
            f"Remaining time on {new_price['id']}",
            round(new_price["unit_amount"] * qty * fraction),
            new_price["id"],
            at,
            end,
        ),
    ]


# --- HTTP ----------------------------------------------------------------------------------------------
def create_subscription(state: State, params: dict[str, Any]) -> dict[str, Any]:
    customer = live_customer(state, require(params, "customer"))
    items = as_list(require(params, "items"))
    price = state.get(require(items[0], "price"), "price")
    if not price["recurring"]:
        raise StandinError(
            400,
            "The price specified is set to `type=one_time` but this field only accepts "
            "prices with `type=recurring`.",
            param="items[0][price]",
        )
    pm_id = params.get("default_payment_method") or customer["invoice_settings"]["default_payment_method"]
    behavior = params.get("payment_behavior", "allow_incomplete")
    if behavior == "error_if_incomplete" and pm_id in state.declining_payment_methods:
        raise StandinError(
            402,
            "Your card was declined.",
            type="card_error",
            code="card_declined",
            decline_code="generic_decline",
        )
    taxed = as_bool((params.get("automatic_tax") or {}).get("enabled", "false"), "automatic_tax[enabled]")
    if taxed:
        require_location(state, customer["id"])
    for removed in ("coupon", "promotion_code"):  # gone since API 2025-03-31: `discounts` instead
        if removed in params:
            raise StandinError(
                400, f"Received unknown parameter: {removed}", code="parameter_unknown", param=removed
            )
    asked = promotions.resolve(
        state,
        params.get("discounts"),
        customer=customer["id"],
        amount=price["unit_amount"],
        currency=price["currency"],
        product=price["product"],
    )
    trial = params.get("trial_period_days")
    trial_end = params.get("trial_end")
    if trial_end == "now":
        trial, trial_end = None, None
    elif trial_end is not None:
        trial_end = as_int(trial_end, "trial_end")
        if trial_end <= state.now():
            raise StandinError(
                400, "Invalid timestamp: must be an integer Unix timestamp in the future.", param="trial_end"
            )
    sub = start_subscription(
        state,
        customer,
        price,
        quantity=as_int(items[0].get("quantity", 1), "items[0][quantity]"),
        metadata=params.get("metadata") or {},
        payment_behavior=behavior,
        save_default_payment_method=(params.get("payment_settings") or {}).get(
            "save_default_payment_method", "off"
        ),
        trial_days=as_int(trial, "trial_period_days") if trial else None,
        trial_end=trial_end,
        trial_settings=params.get("trial_settings"),
        payment_method=params.get("default_payment_method"),
        charge_with=pm_id,
        automatic_tax=taxed,
        discounts=promotions.redeem(state, asked, customer=customer["id"]),
    )
    return state.render(sub, as_list(params.get("expand")))


def retrieve_subscription(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    return state.render(state.get(id, "subscription"), as_list(params.get("expand")))


def update_subscription(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    sub = state.get(id, "subscription")
    if sub["status"] in ENDED:
        raise StandinError(
            400,
            "A canceled subscription can only update its cancellation_details and metadata.",
            param="cancel_at_period_end",
        )
    before = state.snapshot(sub)
    item = item_of(sub)
    if "cancel_at_period_end" in params:
        flag = as_bool(params["cancel_at_period_end"], "cancel_at_period_end")
        sub["cancel_at_period_end"] = flag
        sub["cancel_at"] = item["current_period_end"] if flag else None
        sub["canceled_at"] = state.now() if flag else None
        sub["cancellation_details"]["reason"] = "cancellation_requested" if flag else None
    if "metadata" in params:
        sub["metadata"] = _merge_metadata(sub["metadata"], params["metadata"])
    if "default_payment_method" in params:
        sub["default_payment_method"] = params["default_payment_method"] or None
    if "pause_collection" in params:
        pc = params["pause_collection"]
        sub["pause_collection"] = (
            None
            if pc == ""
            else {
                "behavior": require(pc, "behavior"),
                "resumes_at": as_int(pc["resumes_at"], "resumes_at") if pc.get("resumes_at") else None,
            }
        )
    invoice = None
    if items := as_list(params.get("items")):
        entry = items[0]
        if entry.get("id") and entry["id"] != item["id"]:
            raise missing("subscription item", entry["id"], "items[0][id]")
        new_price = state.get(require(entry, "price"), "price")
        behavior = params.get("proration_behavior", "create_prorations")
        at = as_int(params.get("proration_date") or state.now(), "proration_date")
        lines = proration_lines(state, sub, new_price, at) if behavior != "none" else []
        pm_id = payment_method_for(state, sub)
        if behavior == "always_invoice" and pm_id in state.declining_payment_methods:
            raise StandinError(402, "Your card was declined.", type="card_error", code="card_declined")
        item["price"] = new_price["id"]
        if behavior == "always_invoice" and lines:
            invoice = open_invoice(state, sub, lines=lines, billing_reason="subscription_update")
            sub["latest_invoice"] = invoice["id"]
            if invoice["status"] == "open":
                attempt_payment(state, invoice, pm_id)
        elif lines:
            sub.setdefault("_pending_prorations", []).extend(lines)
    if state.snapshot(sub) != before:
        state.emit("customer.subscription.updated", sub, before)
    return state.render(sub, as_list(params.get("expand")))


def cancel_subscription(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    sub = state.get(id, "subscription")
    if sub["status"] in ENDED:
        raise StandinError(
            400, f"This subscription has already been canceled: {id}", code="resource_missing", param="id"
        )
    prorate = as_bool(params.get("prorate", "false"), "prorate")
    invoice_now = as_bool(params.get("invoice_now", "false"), "invoice_now")
    details = params.get("cancellation_details") or {}
    if details.get("feedback") not in (None, *FEEDBACK):
        raise StandinError(
            400, "Invalid cancellation_details[feedback].", param="cancellation_details[feedback]"
        )
    sub["cancellation_details"].update(
        comment=details.get("comment", sub["cancellation_details"]["comment"]),
        feedback=details.get("feedback", sub["cancellation_details"]["feedback"]),
    )
    lines = sub.pop("_pending_prorations", []) if invoice_now else []
    if prorate:
        lines.append(_unused_time_credit(state, sub))
    end_subscription(state, sub, "cancellation_requested")
    if invoice_now and lines:
        # The final invoice: a credit (unused time) leaves nothing due and goes to the customer's balance.
        invoice = open_invoice(state, sub, lines=lines, billing_reason="subscription_update")
        sub["latest_invoice"] = invoice["id"]
        if invoice["total"] < 0:
            customer = state.objects[sub["customer"]]
            before = state.snapshot(customer)
            customer["balance"] += invoice["total"]
            state.emit("customer.updated", customer, before)
        elif invoice["total"] > 0:
            settle(state, sub, invoice, payment_method_for(state, sub))
    elif prorate:
        # Left as a pending invoice item, collected with the customer's next invoice.
        sub.setdefault("_pending_prorations", []).extend(lines)
    return state.render(sub, as_list(params.get("expand")))


# Stripe's `cancellation_details.feedback` values.
FEEDBACK = (
    "customer_service",
    "low_quality",
    "missing_features",
    "other",
    "switched_service",
    "too_complex",
    "too_expensive",
    "unused",
)


def _unused_time_credit(state: State, sub: dict[str, Any]) -> tuple[str, int, str | None, int, int]:
    """What `prorate` credits on cancel: the unused rest of the period, as a negative line."""
    item = item_of(sub)
    price = state.objects[item["price"]]
    start, end = item["current_period_start"], item["current_period_end"]
    now = min(max(state.now(), start), end)
    fraction = (end - now) / (end - start) if end > start else 0
    amount = -round(price["unit_amount"] * item["quantity"] * fraction)
    return (f"Unused time on {price['id']}", amount, price["id"], now, end)


def resume_subscription(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    sub = state.get(id, "subscription")
    if sub["status"] != "paused":
        raise StandinError(400, "Only a paused subscription can be resumed.", param="id")
    item = item_of(sub)
    price = state.objects[item["price"]]
    pm_id = payment_method_for(state, sub)
    if pm_id is None or pm_id in state.declining_payment_methods:
        raise StandinError(402, "Your card was declined.", type="card_error", code="card_declined")
    before = state.snapshot(sub)
    now = state.now()
    item["current_period_start"] = now
    item["current_period_end"] = add_interval(now, price["recurring"])
    line = ("Resumed", price["unit_amount"] * item["quantity"], price["id"], now, item["current_period_end"])
    invoice = open_invoice(state, sub, lines=[line], billing_reason="subscription_cycle")
    sub["latest_invoice"] = invoice["id"]
    attempt_payment(state, invoice, pm_id)
    sub["status"] = "active"
    state.emit("customer.subscription.resumed", sub)
    state.emit("customer.subscription.updated", sub, before)
    return state.render(sub, as_list(params.get("expand")))


def retrieve_setup_intent(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    return state.render(state.get(id, "setup_intent"), as_list(params.get("expand")))


def list_subscriptions(state: State, params: dict[str, Any]) -> dict[str, Any]:
    expand = [e.removeprefix("data.") for e in as_list(params.get("expand"))]
    status = params.get("status")
    if status == "all" and not params.get("customer") and not params.get("price"):
        # Every subscription (what a full sync pages through): the cached listing, no sort per page.
        subs, positions = state.listing("subscription")
        return list_page(
            subs, params, "/v1/subscriptions", lambda s: state.render(s, expand), positions=positions
        )
    subs = state.all("subscription")
    if status is None:
        subs = [s for s in subs if s["status"] not in ENDED]
    elif status == "ended":
        subs = [s for s in subs if s["status"] in ENDED]
    elif status != "all":
        subs = [s for s in subs if s["status"] == status]
    if customer := params.get("customer"):
        subs = [s for s in subs if s["customer"] == customer]
    if price := params.get("price"):
        subs = [s for s in subs if item_of(s)["price"] == price]
    return list_page(subs, params, "/v1/subscriptions", lambda s: state.render(s, expand))


def create_preview(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """An invoice preview for a planned subscription change; nothing is saved."""
    sub = state.get(require(params, "subscription"), "subscription")
    details = params.get("subscription_details") or {}
    item = item_of(sub)
    entry = (as_list(details.get("items")) or [{}])[0]
    new_price = state.get(entry.get("price") or item["price"], "price")
    behavior = details.get("proration_behavior", "create_prorations")
    at = as_int(details.get("proration_date") or state.now(), "proration_date")
    lines = proration_lines(state, sub, new_price, at) if behavior != "none" else []
    if behavior != "always_invoice":
        end = item["current_period_end"]
        lines.append(
            (
                f"1 × {new_price['id']}",
                new_price["unit_amount"] * item["quantity"],
                new_price["id"],
                end,
                add_interval(end, new_price["recurring"]),
            )
        )
    total = sum(amount for _, amount, *_ in lines)
    return {
        "id": f"upcoming_{new_id('in')}",
        "object": "invoice",
        "amount_due": max(total, 0),
        "amount_paid": 0,
        "amount_remaining": max(total, 0),
        "created": state.now(),
        "currency": new_price["currency"],
        "customer": sub["customer"],
        "lines": {
            "object": "list",
            "has_more": False,
            "url": "/v1/invoices/upcoming/lines",
            "data": [
                {
                    "id": new_id("il_tmp"),
                    "object": "line_item",
                    "amount": amount,
                    "currency": "usd",
                    "description": desc,
                    "period": {"start": start, "end": end},
                    "pricing": {
                        "type": "price_details",
                        "price_details": {"price": price_id, "product": None},
                    },
                }
                for desc, amount, price_id, start, end in lines
            ],
        },
        "livemode": False,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"metadata": sub["metadata"], "subscription": sub["id"]},
        },
        "status": "draft",
        "subscription_proration_date": at,
        "subtotal": total,
        "total": total,
    }


ROUTES = [
    ("POST", "/v1/subscriptions", create_subscription),
    ("GET", "/v1/subscriptions/{id}", retrieve_subscription),
    ("POST", "/v1/subscriptions/{id}", update_subscription),
    ("DELETE", "/v1/subscriptions/{id}", cancel_subscription),
    ("POST", "/v1/subscriptions/{id}/resume", resume_subscription),
    ("GET", "/v1/subscriptions", list_subscriptions),
    ("POST", "/v1/invoices/create_preview", create_preview),
    ("GET", "/v1/setup_intents/{id}", retrieve_setup_intent),
]
