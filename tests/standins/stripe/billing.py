"""Money movement: invoices, payment intents, charges, invoice payments and refunds.

Event order follows what Stripe sends for a paid invoice (charge, payment intent, invoice) and for a
failed one (charge.failed, payment_intent.payment_failed, invoice.payment_failed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import promotions
from .tax import tax_on, total_taxes
from .wire import StandinError, as_int, as_list, list_page, missing, new_id, require

if TYPE_CHECKING:
    from .state import State

RETRY_DELAY = 3 * 86400


def open_invoice(
    state: State,
    sub: dict[str, Any],
    *,
    lines: list[tuple[str, int, str | None, int, int]],
    billing_reason: str,
) -> dict[str, Any]:
    """A finalized invoice for `sub`; each line is (description, amount, price id, period start, end),
    less what the subscription's discounts take off a new period (`promotions.invoice_discount`). With
    `automatic_tax`, tax on the customer's address is added on top of what is left (`total_taxes`)."""
    subtotal = sum(amount for _, amount, _, _, _ in lines)
    discount, discounts = (
        promotions.invoice_discount(state, sub, subtotal, sub["currency"])
        if billing_reason in ("subscription_create", "subscription_cycle")
        else (0, [])
    )
    taxed = bool((sub.get("automatic_tax") or {}).get("enabled"))
    address = state.objects[sub["customer"]].get("address") if taxed else None
    taxable = max(subtotal - discount, 0)
    tax = tax_on(taxable, address) if taxed else 0
    total = subtotal - discount + tax
    now = state.now()
    invoice = state.add(
        {
            "object": "invoice",
            "account_country": "US",
            "amount_due": max(total, 0),
            "amount_paid": 0,
            "amount_remaining": max(total, 0),
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": True,
            "billing_reason": billing_reason,
            "collection_method": "charge_automatically",
            "currency": "usd",
            "customer": sub["customer"],
            "default_payment_method": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "lines": {"object": "list", "data": [], "has_more": False, "url": ""},
            "next_payment_attempt": now if total > 0 else None,
            "number": None,
            "parent": {
                "quote_details": None,
                "subscription_details": {"metadata": dict(sub["metadata"]), "subscription": sub["id"]},
                "type": "subscription_details",
            },
            "period_end": min(end for *_, end in lines) if lines else now,
            "period_start": min(start for *_, start, _ in lines) if lines else now,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "discounts": discounts,
            "subtotal": subtotal,
            "total": total,
            "total_discount_amounts": [{"amount": discount, "discount": d} for d in discounts[:1]],
            "total_excluding_tax": subtotal - discount,
            "total_taxes": total_taxes(tax, taxable),
            "automatic_tax": {
                "enabled": taxed,
                "liability": {"type": "self"} if taxed else None,
                "status": "complete" if taxed else None,
            },
        },
        "in",
    )
    invoice["lines"]["url"] = f"/v1/invoices/{invoice['id']}/lines"
    invoice["lines"]["data"] = [
        {
            "id": new_id("il"),
            "object": "line_item",
            "amount": amount,
            "currency": "usd",
            "description": description,
            "invoice": invoice["id"],
            "livemode": False,
            "metadata": {},
            "period": {"start": start, "end": end},
            "pricing": {"type": "price_details", "price_details": {"price": price, "product": None}},
            "quantity": 1,
            "subscription": sub["id"],
        }
        for description, amount, price, start, end in lines
    ]
    state.emit("invoice.created", invoice)
    invoice["status"] = "open" if total > 0 else "paid"
    invoice["number"] = f"STANDIN-{invoice['_seq']:04d}"
    invoice["status_transitions"]["finalized_at"] = now
    set_invoice_urls(state, invoice)
    if total > 0:
        intent = state.add(
            {
                "object": "payment_intent",
                "amount": total,
                "amount_received": 0,
                "currency": "usd",
                "customer": sub["customer"],
                "latest_charge": None,
                "last_payment_error": None,
                "payment_method": None,
                "status": "requires_payment_method",
            },
            "pi",
        )
        intent["client_secret"] = f"{intent['id']}_secret_{new_id('s', 24)[2:]}"
        invoice["_intent"] = intent["id"]
        invoice["_hidden"] = {
            "confirmation_secret": {"client_secret": intent["client_secret"], "type": "payment_intent"}
        }
    else:
        invoice["status_transitions"]["paid_at"] = now
        # Nothing to pay (a trial's first invoice): expandable, and null, as at Stripe.
        invoice["_hidden"] = {"confirmation_secret": None}
    state.emit("invoice.finalized", invoice)
    if total <= 0:
        state.emit("invoice.paid", invoice)
    return invoice


def set_invoice_urls(state: State, invoice: dict[str, Any]) -> None:
    """A finalized invoice's hosted page and PDF, as Stripe gives them (served by `hosted.py`)."""
    invoice["hosted_invoice_url"] = f"{state.base_url}/i/{invoice['id']}"
    invoice["invoice_pdf"] = f"{state.base_url}/invoice/{invoice['id']}/pdf"


def record_invoice_payment(state: State, invoice: dict[str, Any], intent_id: str) -> dict[str, Any]:
    """The invoice_payment that ties a paid invoice to its PaymentIntent (API 2025-03-31+)."""
    now = state.now()
    return state.add(
        {
            "object": "invoice_payment",
            "amount_paid": invoice["amount_paid"],
            "amount_requested": invoice["amount_due"],
            "currency": invoice["currency"],
            "invoice": invoice["id"],
            "is_default": True,
            "payment": {"type": "payment_intent", "payment_intent": intent_id},
            "status": "paid",
            "status_transitions": {"canceled_at": None, "paid_at": now},
        },
        "inpay",
    )


def attempt_payment(state: State, invoice: dict[str, Any], pm_id: str | None) -> bool:
    """Charge `invoice` with `pm_id`; True when paid. Emits Stripe's events for either outcome."""
    if invoice["status"] == "paid":
        return True
    if invoice["status"] != "open":
        raise StandinError(
            400,
            f"Invoice {invoice['id']} is {invoice['status']} and cannot be paid.",
            code="invoice_not_open",
        )
    intent = state.objects[invoice["_intent"]]
    now = state.now()
    invoice["attempted"] = True
    invoice["attempt_count"] += 1
    declined = pm_id is None or pm_id in state.declining_payment_methods
    card = state.objects[pm_id]["card"] if pm_id else None
    charge = state.add(
        {
            "object": "charge",
            "amount": invoice["amount_due"],
            "amount_captured": 0 if declined else invoice["amount_due"],
            "amount_refunded": 0,
            "captured": not declined,
            "currency": "usd",
            "customer": invoice["customer"],
            "description": "Subscription update"
            if invoice["billing_reason"] != "subscription_create"
            else "Subscription creation",
            "disputed": False,
            "failure_code": "card_declined" if declined else None,
            "failure_message": "Your card was declined." if declined else None,
            "metadata": {},
            "outcome": {"type": "issuer_declined" if declined else "authorized"},
            "paid": not declined,
            "payment_intent": intent["id"],
            "payment_method": pm_id,
            "payment_method_details": {
                "card": {"brand": card["brand"], "last4": card["last4"]},
                "type": "card",
            }
            if card
            else None,
            "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False, "url": ""},
            "status": "failed" if declined else "succeeded",
        },
        "ch",
    )
    charge["refunds"]["url"] = f"/v1/charges/{charge['id']}/refunds"
    intent["latest_charge"] = charge["id"]
    intent["payment_method"] = pm_id
    if declined:
        intent["last_payment_error"] = {"code": "card_declined", "type": "card_error"}
        invoice["next_payment_attempt"] = now + RETRY_DELAY
        state.emit("charge.failed", charge)
        state.emit("payment_intent.payment_failed", intent)
        state.emit("invoice.payment_failed", invoice)
        return False
    intent.update(status="succeeded", amount_received=invoice["amount_due"], last_payment_error=None)
    invoice.update(
        status="paid",
        amount_paid=invoice["amount_due"],
        amount_remaining=0,
        next_payment_attempt=None,
        default_payment_method=pm_id,
    )
    invoice["status_transitions"]["paid_at"] = now
    record_invoice_payment(state, invoice, intent["id"])
    state.emit("charge.succeeded", charge)
    state.emit("payment_intent.succeeded", intent)
    state.emit("invoice.paid", invoice)
    state.emit("invoice.payment_succeeded", invoice)
    return True


def require_action(state: State, invoice: dict[str, Any]) -> None:
    """The bank asks for 3-D Secure: the payment waits for the person to authenticate."""
    intent = state.objects[invoice["_intent"]]
    intent["status"] = "requires_action"
    invoice["attempted"] = True
    invoice["attempt_count"] += 1
    state.emit("payment_intent.requires_action", intent)
    state.emit("invoice.payment_action_required", invoice)


def void_invoice(state: State, invoice: dict[str, Any]) -> None:
    if invoice["status"] in ("open", "draft"):
        invoice["status"] = "void"
        invoice["status_transitions"]["voided_at"] = state.now()
        state.emit("invoice.voided", invoice)


def latest_charge(state: State, invoice_id: str | None) -> dict[str, Any] | None:
    invoice = state.objects.get(invoice_id or "")
    if not invoice or "_intent" not in invoice:
        return None
    charge_id = state.objects[invoice["_intent"]]["latest_charge"]
    return state.objects.get(charge_id) if charge_id else None


# Stripe's refund reasons.
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")


def refund_charge(
    state: State,
    charge: dict[str, Any],
    amount: int | None = None,
    *,
    reason: str | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    remaining = charge["amount"] - charge["amount_refunded"]
    if not charge["paid"] or remaining <= 0:
        raise StandinError(
            400, f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
        )
    amount = remaining if amount is None else amount
    if amount <= 0:
        raise StandinError(400, "Invalid positive integer", code="parameter_invalid_integer", param="amount")
    if amount > remaining:
        raise StandinError(
            400,
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})",
            code="amount_too_large",
            param="amount",
        )
    if reason is not None and reason not in REFUND_REASONS:
        raise StandinError(400, f"Invalid reason: must be one of {', '.join(REFUND_REASONS)}", param="reason")
    refund = state.add(
        {
            "object": "refund",
            "amount": amount,
            "balance_transaction": None,
            "charge": charge["id"],
            "currency": charge["currency"],
            "destination_details": {"card": {"type": "refund"}, "type": "card"},
            "metadata": dict(metadata or {}),
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        },
        "re",
    )
    before = state.snapshot(charge)
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
    charge["refunds"]["data"].insert(0, state.render(refund))
    state.emit("charge.refunded", charge, before)
    state.emit("refund.created", refund)
    return refund


# --- HTTP ----------------------------------------------------------------------------------------------
def render_invoice(state: State, invoice: dict[str, Any], expand: list[str]) -> dict[str, Any]:
    """An invoice; `expand[]=payments` includes its invoice payments (a list object), as Stripe does."""
    out = state.render(invoice, [e for e in expand if e != "payments"])
    if "payments" in expand:
        payments = [p for p in state.all("invoice_payment") if p["invoice"] == invoice["id"]]
        out["payments"] = list_page(
            payments, {"limit": 100}, f"/v1/invoice_payments?invoice={invoice['id']}", state.render
        )
    return out


def retrieve_invoice(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    return render_invoice(state, state.get(id, "invoice"), as_list(params.get("expand")))


def list_invoices(state: State, params: dict[str, Any]) -> dict[str, Any]:
    invoices = state.all("invoice")
    if customer := params.get("customer"):
        invoices = [i for i in invoices if i["customer"] == customer]
    if sub := params.get("subscription"):
        invoices = [
            i
            for i in invoices
            if ((i["parent"] or {}).get("subscription_details") or {}).get("subscription") == sub
        ]
    if status := params.get("status"):
        invoices = [i for i in invoices if i["status"] == status]
    expand = [e.removeprefix("data.") for e in as_list(params.get("expand"))]
    return list_page(invoices, params, "/v1/invoices", lambda i: render_invoice(state, i, expand))


def pay_invoice(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    from .subscriptions import settle

    invoice = state.get(id, "invoice")
    sub = state.objects[invoice["parent"]["subscription_details"]["subscription"]]
    pm_id = (
        params.get("payment_method")
        or sub["default_payment_method"]
        or state.objects[sub["customer"]]["invoice_settings"]["default_payment_method"]
    )
    if not settle(state, sub, invoice, pm_id):
        raise StandinError(
            402,
            "Your card was declined.",
            type="card_error",
            code="card_declined",
            decline_code="generic_decline",
        )
    return state.render(invoice)


def list_invoice_payments(state: State, params: dict[str, Any]) -> dict[str, Any]:
    payments = [p for p in state.all("invoice_payment") if p["invoice"] == require(params, "invoice")]
    expand = [e.removeprefix("data.") for e in as_list(params.get("expand"))]
    return list_page(payments, params, "/v1/invoice_payments", lambda p: state.render(p, expand))


def retrieve_payment_intent(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    return state.render(state.get(id, "payment_intent"), as_list(params.get("expand")))


def retrieve_charge(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    return state.render(state.get(id, "charge"), as_list(params.get("expand")))


def list_charges(state: State, params: dict[str, Any]) -> dict[str, Any]:
    charges = state.all("charge")
    if customer := params.get("customer"):
        charges = [c for c in charges if c["customer"] == customer]
    return list_page(charges, params, "/v1/charges", state.render)


def create_refund(state: State, params: dict[str, Any]) -> dict[str, Any]:
    charge_id = params.get("charge")
    if not charge_id and (pi := params.get("payment_intent")):
        charge_id = state.get(pi, "payment_intent")["latest_charge"]
    if not charge_id:
        raise StandinError(400, "Missing required param: charge.", code="parameter_missing", param="charge")
    charge = state.objects.get(charge_id)
    if charge is None or charge.get("object") != "charge":
        raise missing("charge", charge_id, "charge")
    amount = as_int(params["amount"], "amount") if "amount" in params else None
    metadata = params.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise StandinError(400, "Invalid hash", param="metadata")
    refund = refund_charge(state, charge, amount, reason=params.get("reason") or None, metadata=metadata)
    return state.render(refund, as_list(params.get("expand")))


def retrieve_balance(state: State, params: dict[str, Any]) -> dict[str, Any]:
    """The account's balance, in the mode of the key that asks (what a key check reads)."""
    funds = [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}]
    return {
        "object": "balance",
        "available": funds,
        "connect_reserved": [{"amount": 0, "currency": "usd"}],
        "livemode": state.request_livemode,
        "pending": funds,
    }


ROUTES = [
    ("GET", "/v1/balance", retrieve_balance),
    ("GET", "/v1/invoices/{id}", retrieve_invoice),
    ("GET", "/v1/invoices", list_invoices),
    ("POST", "/v1/invoices/{id}/pay", pay_invoice),
    ("GET", "/v1/invoice_payments", list_invoice_payments),
    ("GET", "/v1/payment_intents/{id}", retrieve_payment_intent),
    ("GET", "/v1/charges/{id}", retrieve_charge),
    ("GET", "/v1/charges", list_charges),
    ("POST", "/v1/refunds", create_refund),
]
