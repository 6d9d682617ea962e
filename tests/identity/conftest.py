"""Fixtures for identity-token tests: a live JWKS stand-in, an HTTP client and a clock we control."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from tests.standins.jwks_server import JwksStandin


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
