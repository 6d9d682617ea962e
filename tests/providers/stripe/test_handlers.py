"""Each handler called directly with the recorded payload named after its event."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.providers.stripe.handlers import HANDLERS, HandlerContext, handle, invoice_subscription_id
from entitle.providers.stripe.provider import StripeProvider

EVENTS = Path(__file__).parent / "events"


def recorded(event_type: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((EVENTS / f"{event_type}.json").read_text())
    return payload


def test_every_handled_type_has_a_recording_and_a_why_comment() -> None:
    source = Path(__import__("entitle.providers.stripe.handlers", fromlist=["x"]).__file__).read_text()
    table = source[source.index("HANDLERS: dict") :]
    for event_type in HANDLERS:
        assert recorded(event_type)["type"] == event_type
        line = next(i for i, text in enumerate(table.splitlines()) if f'"{event_type}"' in text)
        assert table.splitlines()[line - 1].strip().startswith("#")


def test_invoices_name_their_subscription_under_parent() -> None:
    invoice = recorded("invoice.payment_failed")["data"]["object"]
    assert "subscription" not in invoice  # current API versions moved it
    assert invoice_subscription_id(invoice) == invoice["parent"]["subscription_details"]["subscription"]


@pytest.mark.parametrize("event_type", sorted(HANDLERS))
async def test_handlers_take_ids_from_the_payload_and_ask_stripe(
    event_type: str, db: AsyncSession, stripe_provider: StripeProvider
) -> None:
    # The recorded objects do not exist at this fresh stand-in: each handler must ask Stripe about the
    # right object and acknowledge that it is unknown rather than trust the snapshot.
    event = recorded(event_type)
    obj = event["data"]["object"]
    context = HandlerContext(
        db=db, reconciler=stripe_provider.reconciler, purchases=stripe_provider.purchase_reconciler
    )
    outcome = await handle(context, event)
    expected = {
        "checkout.session.async_payment_succeeded": obj.get("payment_intent"),
        "charge.dispute.created": obj.get("payment_intent"),
        "charge.dispute.closed": obj.get("payment_intent"),
        "checkout.session.completed": obj.get("subscription"),
        "invoice.paid": invoice_subscription_id(obj),
        "invoice.payment_failed": invoice_subscription_id(obj),
        "invoice.payment_action_required": invoice_subscription_id(obj),
        "customer.deleted": obj["id"],
        "charge.refunded": obj.get("customer"),
    }.get(event_type, obj["id"])
    assert expected and expected in outcome


async def test_unknown_types_are_acknowledged(db: AsyncSession, stripe_provider: StripeProvider) -> None:
    outcome = await handle(
        HandlerContext(db=db, reconciler=stripe_provider.reconciler),
        {"type": "balance.available", "data": {"object": {}}},
    )
    assert outcome.startswith("acknowledged")
