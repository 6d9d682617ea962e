"""Sign-in rate limits, in memory and shared through Redis."""

from __future__ import annotations

import os
import uuid

import pytest

from entitle.errors import RateLimited
from entitle.services.identity.ratelimit import SignInRateLimiter

REDIS_URL = os.environ.get("ENTITLE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def _redis_available() -> bool:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


async def test_memory_limits_per_address_and_per_ip() -> None:
    limiter = SignInRateLimiter(per_address="2/minute", per_ip="3/minute")
    await limiter.hit("login", ip="10.0.0.1", address="ada@example.com")
    await limiter.hit("login", ip="10.0.0.2", address="ADA@example.com")
    with pytest.raises(RateLimited) as limited:
        await limiter.hit("login", ip="10.0.0.3", address="ada@example.com")
    assert 1 <= limited.value.retry_after <= 60
    # The per-IP window is separate from the address's.
    await limiter.hit("login", ip="10.0.0.1", address="bob@example.com")
    await limiter.hit("login", ip="10.0.0.1", address="cy@example.com")
    with pytest.raises(RateLimited):
        await limiter.hit("login", ip="10.0.0.1", address="dee@example.com")


async def test_redis_limits_are_shared_between_processes() -> None:
    if not await _redis_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is required in CI")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable")
    address = f"{uuid.uuid4()}@example.com"
    # Two limiters stand for two API processes sharing one Redis.
    first = SignInRateLimiter(per_address="2/minute", per_ip="100/minute", redis_url=REDIS_URL)
    second = SignInRateLimiter(per_address="2/minute", per_ip="100/minute", redis_url=REDIS_URL)
    try:
        await first.hit("login", ip=None, address=address)
        await second.hit("login", ip=None, address=address)
        with pytest.raises(RateLimited):
            await first.hit("login", ip=None, address=address)
    finally:
        await first.close()
        await second.close()


async def test_with_redis_down_sign_in_is_still_limited_per_process(caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens on port 1: every call to the shared store fails to connect.
    limiter = SignInRateLimiter(
        per_address="2/minute", per_ip="100/minute", redis_url="redis://127.0.0.1:1/0"
    )
    try:
        await limiter.hit("login", ip="10.0.0.1", address="pat@example.com")
        await limiter.hit("login", ip="10.0.0.1", address="pat@example.com")
        with pytest.raises(RateLimited):
            await limiter.hit("login", ip="10.0.0.1", address="pat@example.com")
    finally:
        await limiter.close()
    assert "Redis is unreachable" in caplog.text


async def test_ipv6_clients_are_limited_per_64_and_ipv4_per_address() -> None:
    limiter = SignInRateLimiter(per_address="100/minute", per_ip="2/minute")
    await limiter.hit("login", ip="2001:db8:1:2::1", address="a@example.com")
    await limiter.hit("login", ip="2001:db8:1:2:ffff::9", address="b@example.com")
    with pytest.raises(RateLimited):
        await limiter.hit("login", ip="2001:db8:1:2:abcd:1:2:3", address="c@example.com")
    # The next /64 is another client, and so is the next IPv4 address.
    await limiter.hit("login", ip="2001:db8:1:3::1", address="d@example.com")
    await limiter.hit("login", ip="10.0.0.1", address="e@example.com")
    await limiter.hit("login", ip="10.0.0.1", address="f@example.com")
    await limiter.hit("login", ip="10.0.0.2", address="g@example.com")
