"""Liveness and the public keys that verify access tokens."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

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
