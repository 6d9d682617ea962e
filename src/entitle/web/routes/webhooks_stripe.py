"""POST /webhooks/stripe: verify, store, then process; answer 200 once the event is safely stored."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from entitle.providers.stripe.provider import PROVIDER, StripeProvider
from entitle.web.deps import ContextDep

router = APIRouter(tags=["webhooks"])


@router.post("/webhooks/stripe")
async def stripe_webhook(request: Request, context: ContextDep) -> dict[str, Any]:
    provider: StripeProvider = context.providers[PROVIDER]
    # The signature covers the exact bytes Stripe sent, so nothing may parse the body before this.
    body = await request.body()
    event = provider.verify(body, request.headers.get("stripe-signature"))
    received = await context.inbox.receive(
        provider=PROVIDER,
        event_id=event.id,
        type=event.type,
        raw_body=body,
        ordering_key=event.customer_id,
        occurred_at=event.created,
    )
    # Processing failures are recorded on the stored row and retried by the worker; Stripe only
    # needs to know the event is safe, so the answer is 200 either way.
    status = await context.inbox.process(received.event)
    return {"received": True, "duplicate": not received.created, "status": str(status)}
