"""Fixtures for identity-token tests: a live JWKS stand-in, an HTTP client and a clock we control."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.standins.jwks_server import (
    APPLE_BUNDLE_ID,
    APPLE_SERVICES_ID,
    GOOGLE_IOS_CLIENT_ID,
    GOOGLE_WEB_CLIENT_ID,
    JwksStandin,
)


class FakeClock:
    """A clock the test moves by hand, so expiry and cache lifetimes are checked without sleeping."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def idp() -> Iterator[JwksStandin]:
    with JwksStandin() as standin:
        yield standin


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings_overrides(idp: JwksStandin, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Point the app's Apple and Google verifiers at the stand-in; `indirect` params add more."""
    overrides: dict[str, Any] = {
        "apple_signin_client_ids": [APPLE_BUNDLE_ID, APPLE_SERVICES_ID],
        "apple_signin_jwks_url": idp.url,
        "google_client_ids": [GOOGLE_WEB_CLIENT_ID, GOOGLE_IOS_CLIENT_ID],
        "google_jwks_url": idp.url,
    }
    overrides.update(getattr(request, "param", {}))
    return overrides
