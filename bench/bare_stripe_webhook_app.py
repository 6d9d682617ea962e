"""The Stripe webhook baseline: verify the signature and insert the inbox row, nothing else.

Same settings, same verification code and same inbox insert as the real endpoint, so the ratio
measures what processing (re-reading Stripe, storing the subscription, recomputing entitlements) costs.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from entitle.context import build_context
from entitle.errors import EntitleError
from entitle.providers.stripe.provider import PROVIDER, StripeProvider
from entitle.settings import Settings


def create_app() -> Starlette:
    context = build_context(Settings())
    provider: StripeProvider = context.providers[PROVIDER]

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            event = provider.verify(body, request.headers.get("stripe-signature"))
        except EntitleError as exc:
            return JSONResponse(exc.to_body(), exc.status_code)
        await context.inbox.receive(
            provider=PROVIDER,
            event_id=event.id,
            type=event.type,
            raw_body=body,
            ordering_key=event.customer_id,
            occurred_at=event.created,
        )
        return JSONResponse({"received": True})

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/webhooks/stripe", receive, methods=["POST"]), Route("/healthz", health)])
