"""Small factories for tests: make what a test needs, with overrides."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import Account
from entitle.services import accounts

DEFAULT_PASSWORD = "correct horse battery staple"


async def make_account(db: AsyncSession, *, email: str = "person@example.com", **overrides: Any) -> Account:
    """A password account, committed."""
    account = await accounts.register_with_password(
        db, email=email, password=overrides.pop("password", DEFAULT_PASSWORD)
    )
    for name, value in overrides.items():
        setattr(account, name, value)
    await db.commit()
    return account


async def register(
    http: httpx.AsyncClient, email: str = "person@example.com", password: str = DEFAULT_PASSWORD
) -> dict[str, Any]:
    """Register over HTTP; returns the session body (account, access_token, refresh_token)."""
    response = await http.post("/v1/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(session_or_token: dict[str, Any] | str) -> dict[str, str]:
    token = session_or_token if isinstance(session_or_token, str) else session_or_token["access_token"]
    return {"Authorization": f"Bearer {token}"}
