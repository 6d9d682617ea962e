"""Liveness and the public keys that verify access tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from entitle.errors import NotFound
from entitle.web.deps import ContextDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(context: ContextDep) -> JSONResponse:
    try:
        async with context.database.sessionmaker() as db:
            await db.execute(text("SELECT 1"))
    except Exception:  # the database did not answer: say so, never a traceback
        return JSONResponse(
            {
                "status": "unavailable",
                "error": {"code": "database_unavailable", "message": "The database did not answer."},
            },
            status_code=503,
        )
    return JSONResponse({"status": "ok"})


@router.get("/.well-known/jwks.json")
async def jwks(context: ContextDep) -> dict[str, Any]:
    return context.tokens.jwks()


@router.get("/.well-known/apple-app-site-association")
async def apple_app_site_association(context: ContextDep) -> JSONResponse:
    """Universal links: the iPhone app opens the mailed redemption link (`/redeem`) instead of Safari.
    Served as JSON with no redirect, as Apple's CDN requires (it fetches the file over https)."""
    settings = context.settings
    if not settings.ios_app_id_prefix or not settings.apple_bundle_id:
        raise NotFound(
            "No iPhone app is configured for universal links on this server.", code="no_universal_links"
        )
    app_id = f"{settings.ios_app_id_prefix}.{settings.apple_bundle_id}"
    return JSONResponse(
        {"applinks": {"details": [{"appIDs": [app_id], "components": [{"/": "/redeem"}]}]}},
        media_type="application/json",
    )
