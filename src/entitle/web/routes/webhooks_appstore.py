"""POST /webhooks/appstore: App Store Server Notifications V2; 200 only once the notification is stored."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from entitle.providers.appstore.provider import PROVIDER, AppStoreProvider
from entitle.web.deps import ContextDep

router = APIRouter(tags=["webhooks"])


@router.post("/webhooks/appstore")
async def appstore_webhook(request: Request, context: ContextDep) -> dict[str, Any]:
    provider: AppStoreProvider = context.providers[PROVIDER]
    # Verification errors answer 4xx, a storage failure 503 (Apple retries); once stored, processing
    # failures stay on the inbox row for the worker, so Apple is told 200.
    receipt = await provider.receive_notification(await request.body())
    return {"received": True, "duplicate": not receipt.created, "status": str(receipt.status)}
