"""Provider webhooks: one generic path for every provider. Verify, store, answer; processing follows
at once, off the request (`services.delivery.pipeline`).

Verification errors answer 4xx, a storage failure 503 (every vendor retries a 5xx, so the event comes
back), an unconfigured provider 503 naming the setting. Once stored, a failure to process is on the
inbox row and retried by entitle, so the vendor is told 200 either way.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from entitle.web.deps import ContextDep

router = APIRouter(tags=["webhooks"])


async def _receive(provider_name: str, request: Request, context: ContextDep) -> dict[str, Any]:
    provider = context.providers[provider_name]
    # The signature covers the exact bytes sent, so nothing may parse the body before the provider.
    receipt = await context.pipeline.ingest(provider, await request.body(), request.headers)
    return {"received": True, "duplicate": not receipt.created, "status": receipt.status}


@router.post("/webhooks/stripe")
async def stripe_webhook(request: Request, context: ContextDep) -> dict[str, Any]:
    """Stripe events, signed with `Stripe-Signature`."""
    return await _receive("stripe", request, context)


@router.post("/webhooks/appstore")
async def appstore_webhook(request: Request, context: ContextDep) -> dict[str, Any]:
    """App Store Server Notifications V2 (`{"signedPayload"}`)."""
    return await _receive("app_store", request, context)


@router.post("/webhooks/apple/signin")
async def apple_signin_notification(request: Request, context: ContextDep) -> dict[str, Any]:
    """Sign in with Apple server-to-server notifications (`{"payload"}`)."""
    return await _receive("apple_signin", request, context)
