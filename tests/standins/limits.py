"""What a real vendor does to a client: answers late, and refuses it when it is too fast.

Rate limits are token buckets, one for the whole account and one per endpoint (method and path
template), each holding one second of requests and refilled continuously, the limiter Stripe describes
for its API (https://stripe.com/blog/rate-limiters). A refused request takes no token. Latency is an
`asyncio.sleep` inside the server's event loop, so slow answers overlap as they do at the vendor, and is
added to refusals too (the round trip is the same). Everything is counted per endpoint in `stats`, which
the test's thread reads while the server's thread writes (hence the lock).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class StandinStats:
    """Requests that reached the stand-in and those it answered 429, per endpoint."""

    requests: Counter[str] = field(default_factory=Counter)
    rate_limited: Counter[str] = field(default_factory=Counter)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def total_rate_limited(self) -> int:
        return sum(self.rate_limited.values())


@dataclass(frozen=True)
class Refusal:
    # "global-rate" or "endpoint-rate", as Stripe's `Stripe-Rate-Limited-Reason` says.
    reason: str
    # Seconds until the bucket that refused holds a token again.
    retry_after: float


class _Bucket:
    def __init__(self, per_second: float) -> None:
        self.rate = per_second
        self.tokens = per_second
        self.at = time.monotonic()

    def refill(self, now: float) -> None:
        self.tokens = min(self.rate, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now

    def wait(self) -> float:
        return max(0.0, (1 - self.tokens) / self.rate)


class VendorLimits:
    """Latency and rate limits for a stand-in; the defaults answer at once and never refuse."""

    def __init__(
        self,
        *,
        latency_ms: float = 0,
        jitter_ms: float = 0,
        per_second: float | None = None,
        per_endpoint: float | None = None,
        endpoint_limits: dict[str, float] | None = None,
    ) -> None:
        self.latency_ms = latency_ms
        self.jitter_ms = jitter_ms
        self.per_second = per_second
        self.per_endpoint = per_endpoint
        self.endpoint_limits = dict(endpoint_limits or {})
        self.stats = StandinStats()
        self._lock = threading.Lock()
        self._account = _Bucket(per_second) if per_second else None
        self._endpoints: dict[str, _Bucket | None] = {}

    def admit(self, endpoint: str) -> Refusal | None:
        """Count a request arriving for `endpoint`; a Refusal when a limit is exceeded."""
        with self._lock:
            self.stats.requests[endpoint] += 1
            now = time.monotonic()
            buckets = [(self._account, "global-rate"), (self._bucket(endpoint), "endpoint-rate")]
            for bucket, _ in buckets:
                if bucket is not None:
                    bucket.refill(now)
            for bucket, reason in buckets:
                if bucket is not None and bucket.tokens < 1:
                    self.stats.rate_limited[endpoint] += 1
                    return Refusal(reason, bucket.wait())
            for bucket, _ in buckets:
                if bucket is not None:
                    bucket.tokens -= 1
            return None

    def refused(self, endpoint: str) -> None:
        """Count a 429 answered for another reason (one a test injected)."""
        with self._lock:
            self.stats.rate_limited[endpoint] += 1

    async def answer_later(self) -> None:
        """Wait as long as the vendor takes to answer."""
        if self.latency_ms or self.jitter_ms:
            spread = random.uniform(-self.jitter_ms, self.jitter_ms)
            await asyncio.sleep(max(0.0, self.latency_ms + spread) / 1000)

    def _bucket(self, endpoint: str) -> _Bucket | None:
        if endpoint not in self._endpoints:
            rate = self.endpoint_limits.get(endpoint, self.per_endpoint)
            self._endpoints[endpoint] = _Bucket(rate) if rate else None
        return self._endpoints[endpoint]
