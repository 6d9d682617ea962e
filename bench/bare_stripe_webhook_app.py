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
    # Stores without claiming, as `entitle serve --no-worker` does: the same insert (and, on PostgreSQL,
    # the same NOTIFY to workers) as the acknowledging app, so the two differ only in the stack around it.
    context = build_context(Settings(), process_locally=False)
    provider: StripeProvider = context.providers[PROVIDER]

    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            incoming = await provider.verify_webhook(body, request.headers)
        except EntitleError as exc:
            return JSONResponse(exc.to_body(), exc.status_code)
        received = await context.pipeline.inbox.receive(
            provider=PROVIDER, incoming=incoming, raw_body=body, claim=False
        )
        return JSONResponse({"received": True, "duplicate": not received.created})

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/webhooks/stripe", receive, methods=["POST"]), Route("/healthz", health)])
