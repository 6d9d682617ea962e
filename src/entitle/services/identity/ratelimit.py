"""Rate limits on sign-in, registration and every route that sends mail, per address and per client IP.

Per client IP means per IPv4 address, or per IPv6 /64 (`client_bucket`). The address is the peer's,
or the one a proxy named in ENTITLE_TRUSTED_PROXIES forwarded (`create_app`).

Mail gets its own, stricter budget per address, shared by every route that mails (`mail=True`), so the
service cannot be used to flood someone's inbox however the requests are spread over routes.

In memory by default (one process); with ENTITLE_REDIS_URL set, limits are shared by every API process
so a guesser cannot multiply its budget by the number of processes. While Redis is down, each process
counts on its own (logged once a minute): never a failed sign-in, never an unlimited one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError as LimitsStorageError
from limits.storage import storage_from_string
from redis.exceptions import RedisError

from entitle.errors import RateLimited

log = logging.getLogger(__name__)


class SignInRateLimiter:
    def __init__(
        self, *, per_address: str, per_ip: str, redis_url: str | None = None, mail_per_address: str = "5/hour"
    ) -> None:
        self.storage: Storage = MemoryStorage()
        if redis_url:
            # redis-py's asyncio client (a dependency already), not the default coredis.
            shared = storage_from_string(_async_redis_uri(redis_url), implementation="redispy")
            assert isinstance(shared, Storage)
            self.storage = shared
        self.limiter = MovingWindowRateLimiter(self.storage)
        # While Redis cannot be reached, limits are counted in this process instead: sign-in keeps working
        # and stays limited (per process) rather than failing or going unlimited.
        self._fallback = MovingWindowRateLimiter(MemoryStorage()) if redis_url else None
        self._warned_at = 0.0
        self.per_address: RateLimitItem = parse(per_address)
        self.per_ip: RateLimitItem = parse(per_ip)
        self.mail_per_address: RateLimitItem = parse(mail_per_address)

    async def hit(
        self, action: str, *, ip: str | None, address: str | None = None, mail: bool = False
    ) -> None:
        """Count one attempt; raise RateLimited (429 with Retry-After) when a window is full.

        `mail=True` for a request that may send mail to `address`: that address's mail budget is counted
        too, across all such routes.
        """
        checks: list[tuple[RateLimitItem, str]] = []
        if ip:
            checks.append((self.per_ip, f"{action}:ip:{client_bucket(ip)}"))
        if address:
            # Hashed so addresses never sit in Redis in clear text.
            checks.append((self.per_address, f"{action}:addr:{_digest(address.lower())}"))
            if mail:
                checks.append((self.mail_per_address, f"mail:addr:{_digest(address.lower())}"))
        for item, key in checks:
            try:
                await self._hit(self.limiter, item, key)
            except (OSError, RedisError, LimitsStorageError) as exc:
                if self._fallback is None:
                    raise
                self._warn(exc)
                await self._hit(self._fallback, item, key)

    @staticmethod
    async def _hit(limiter: MovingWindowRateLimiter, item: RateLimitItem, key: str) -> None:
        if not await limiter.hit(item, "entitle", key):
            stats = await limiter.get_window_stats(item, "entitle", key)
            retry_after = int(stats.reset_time - time.time()) + 1
            raise RateLimited("Too many attempts; wait a little and try again.", retry_after=retry_after)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at > 60:
            self._warned_at = now
            log.warning(
                "Redis is unreachable (%s): rate limits are counted per process until it answers",
                exc.__class__.__name__,
            )

    async def reset(self) -> None:
        await self.storage.reset()

    async def close(self) -> None:
        await close_storage(self.storage)


def client_bucket(ip: str) -> str:
    """The per-client key an address counts under: an IPv4 address, or an IPv6 address's /64.

    One IPv6 subscriber is routinely given a whole /64 (2^64 addresses); counted per address, it
    could give every attempt a fresh budget."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _async_redis_uri(url: str) -> str:
    return url if url.startswith("async+") else "async+" + url


async def close_storage(storage: Storage) -> None:
    """Close the Redis connection pool behind a limits storage (limits itself offers no close)."""
    client = getattr(getattr(storage, "bridge", None), "storage", None)
    if client is not None:
        await client.aclose()
