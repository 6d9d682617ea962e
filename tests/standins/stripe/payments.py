"""One-time payments: PaymentIntents outside invoices, their charges, and disputes.

A PaymentIntent created here (`POST /v1/payment_intents`, or by a payment-mode Checkout Session) waits
for the person to confirm it (`requires_payment_method`); confirming charges the card and emits what
Stripe emits for a successful one-time payment: `charge.succeeded`, then `payment_intent.succeeded`.
A dispute (`open_dispute`) marks the charge `disputed` and emits `charge.dispute.created`; closing it
emits `charge.dispute.closed` with `won` or `lost`. Refunds live in `billing` (`refund_charge`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .customers import live_customer
from .tax import calculation_for_payment
from .wire import StandinError, as_bool, as_int, as_list, list_page, new_id, require

if TYPE_CHECKING:
    from .state import State

# Dispute statuses after which the money is settled one way or the other.
CLOSED_DISPUTES = ("won", "lost", "warning_closed")


def new_payment_intent(
    state: State,
    *,
    amount: int,
    currency: str,
    customer: str | None,
    metadata: dict[str, str] | None = None,
    description: str | None = None,
    automatic_payment_methods: dict[str, Any] | None = None,
) -> dict[str, Any]:
    intent = state.add(
        {
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "automatic_payment_methods": automatic_payment_methods,
            "canceled_at": None,
            "capture_method": "automatic",
            "confirmation_method": "automatic",
            "currency": currency,
            "customer": customer,
            "description": description,
            "last_payment_error": None,
            "latest_charge": None,
            "metadata": metadata or {},
            "payment_method": None,
            "payment_method_types": ["card", "link"],
            "receipt_email": None,
            "setup_future_usage": None,
            "status": "requires_payment_method",
        },
        "pi",
    )
    intent["client_secret"] = f"{intent['id']}_secret_{new_id('s', 24)[2:]}"
    state.emit("payment_intent.created", intent)
    return intent


def charge_intent(state: State, intent: dict[str, Any], pm_id: str) -> bool:
    """Charge `intent` with card `pm_id`; True when it succeeded. Emits Stripe's events either way."""
    if intent["status"] == "succeeded":
        return True
    if intent["status"] not in ("requires_payment_method", "requires_confirmation", "requires_action"):
        raise StandinError(
            400,
            f"This PaymentIntent's status is {intent['status']} and cannot be confirmed.",
            code="payment_intent_unexpected_state",
        )
    declined = pm_id in state.declining_payment_methods
    card = state.objects[pm_id]["card"]
    charge = state.add(
        {
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": 0 if declined else intent["amount"],
            "amount_refunded": 0,
            "captured": not declined,
            "currency": intent["currency"],
            "customer": intent["customer"],
            "description": intent["description"],
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
            },
            "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False, "url": ""},
            "status": "failed" if declined else "succeeded",
        },
        "ch",
    )
    charge["refunds"]["url"] = f"/v1/charges/{charge['id']}/refunds"
    intent.update(latest_charge=charge["id"], payment_method=pm_id)
    if declined:
        intent.update(
            status="requires_payment_method",
            last_payment_error={"code": "card_declined", "type": "card_error"},
        )
        state.emit("charge.failed", charge)
        state.emit("payment_intent.payment_failed", intent)
        return False
    intent.update(status="succeeded", amount_received=intent["amount"], last_payment_error=None)
    state.emit("charge.succeeded", charge)
    state.emit("payment_intent.succeeded", intent)
    return True


def open_dispute(state: State, charge: dict[str, Any], reason: str = "fraudulent") -> dict[str, Any]:
    """The cardholder disputes `charge` with their bank."""
    if not charge["paid"] or charge["disputed"]:
        raise StandinError(400, f"Charge {charge['id']} cannot be disputed.")
    dispute = state.add(
        {
            "object": "dispute",
            "amount": charge["amount"] - charge["amount_refunded"],
            "balance_transactions": [],
            "charge": charge["id"],
            "currency": charge["currency"],
            "evidence": {},
            "is_charge_refundable": False,
            "metadata": {},
            "payment_intent": charge["payment_intent"],
            "reason": reason,
            "status": "needs_response",
        },
        "du",
    )
    before = state.snapshot(charge)
    charge["disputed"] = True
    state.emit("charge.dispute.created", dispute)
    state.emit("charge.updated", charge, before)
    return dispute


def close_dispute(state: State, dispute: dict[str, Any], status: str) -> dict[str, Any]:
    """The bank decides: `won` gives the merchant the money back, `lost` keeps it with the cardholder."""
    if status not in ("won", "lost"):
        raise StandinError(400, f"A dispute closes as won or lost, not {status}.")
    if dispute["status"] in CLOSED_DISPUTES:
        raise StandinError(400, f"Dispute {dispute['id']} is already {dispute['status']}.")
    dispute["status"] = status
    state.emit("charge.dispute.closed", dispute)
    return dispute


# --- HTTP ----------------------------------------------------------------------------------------------
def create_payment_intent(state: State, params: dict[str, Any]) -> dict[str, Any]:
    amount = as_int(require(params, "amount"), "amount")
    if amount < 50:
        raise StandinError(400, "Amount must be at least $0.50 usd", code="amount_too_small", param="amount")
    customer = params.get("customer")
    if customer:
        live_customer(state, customer)
    automatic = params.get("automatic_payment_methods")
    calculation = calculation_for_payment(state, params, amount)
    intent = new_payment_intent(
        state,
        amount=amount,
        currency=str(require(params, "currency")).lower(),
        customer=customer,
        metadata=params.get("metadata") or {},
        description=params.get("description"),
        automatic_payment_methods={
            "enabled": as_bool(automatic.get("enabled", "true"), "automatic_payment_methods[enabled]")
        }
        if isinstance(automatic, dict)
        else None,
    )
    # Stripe records the tax transaction when the payment is captured (and reverses it on refunds).
    intent["hooks"] = {"inputs": {"tax": {"calculation": calculation}}} if calculation else None
    return state.render(intent, as_list(params.get("expand")))


def list_payment_intents(state: State, params: dict[str, Any]) -> dict[str, Any]:
    intents = state.all("payment_intent")
    if customer := params.get("customer"):
        intents = [i for i in intents if i["customer"] == customer]
    created = params.get("created")
    if isinstance(created, dict) and "gte" in created:
        intents = [i for i in intents if i["created"] >= as_int(created["gte"], "created[gte]")]
    expand = [e.removeprefix("data.") for e in as_list(params.get("expand"))]
    return list_page(intents, params, "/v1/payment_intents", lambda i: state.render(i, expand))


def retrieve_dispute(state: State, params: dict[str, Any], id: str) -> dict[str, Any]:
    return state.render(state.get(id, "dispute"), as_list(params.get("expand")))


def list_disputes(state: State, params: dict[str, Any]) -> dict[str, Any]:
    disputes = state.all("dispute")
    if charge := params.get("charge"):
        disputes = [d for d in disputes if d["charge"] == charge]
    if intent := params.get("payment_intent"):
        disputes = [d for d in disputes if d["payment_intent"] == intent]
    return list_page(disputes, params, "/v1/disputes", state.render)


ROUTES = [
    ("POST", "/v1/payment_intents", create_payment_intent),
    ("GET", "/v1/payment_intents", list_payment_intents),
    ("GET", "/v1/disputes/{id}", retrieve_dispute),
    ("GET", "/v1/disputes", list_disputes),
]
