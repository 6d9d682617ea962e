"""GET /v1/status: which stores and sign-in methods work here, for clients deciding what to show."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from entitle.services.reporting.status import server_status
from entitle.web.deps import SettingsDep

router = APIRouter(tags=["health"])

# The answer changes only with a restart; a minute of caching spares every app launch a request.
CACHE_CONTROL = "public, max-age=60"


class StripeStatus(BaseModel):
    configured: bool = Field(description="Stripe purchases can be made and verified (a secret key is set).")
    mode: Literal["test", "live"] | None = Field(
        description="`live` with a live key; null when not configured."
    )


class AppStoreStatus(BaseModel):
    configured: bool = Field(
        description="App Store purchases can be verified (the app's bundle id and roots)."
    )
    environment: Literal["production", "sandbox"] | None = Field(
        description="`production` accepts Production and Sandbox data; `sandbox` only Sandbox (TestFlight, "
        "App Review); null when not configured."
    )


class Stores(BaseModel):
    stripe: StripeStatus
    app_store: AppStoreStatus


class SignIn(BaseModel):
    password: bool = Field(description="Email and password.")
    apple: bool = Field(description="Sign in with Apple (`POST /v1/auth/apple`).")
    google: bool = Field(description="Sign in with Google (`POST /v1/auth/google`).")


class ServerStatus(BaseModel):
    stores: Stores
    sign_in: SignIn
    guest_checkout: bool = Field(
        description="Visitors may pay on Stripe Checkout before they have an account."
    )


@router.get("/v1/status", response_model=ServerStatus)
async def status(settings: SettingsDep, response: Response) -> dict[str, Any]:
    """Which stores take payments and which ways to sign in work on this server (anyone may ask)."""
    response.headers["Cache-Control"] = CACHE_CONTROL
    return server_status(settings)
