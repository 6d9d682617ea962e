"""A local stand-in for Stripe's API, speaking its wire format on a loopback port.

    standin = StripeStandin().start()
    client = stripe.StripeClient(standin.secret_key, base_addresses={"api": standin.base_url}, ...)
    ... the code under test calls Stripe ...
    standin.complete_checkout(session_id)     # a person pays (or a browser, at the session's `url`)
    standin.renew(sub_id)                     # a month passes
    standin.confirm_payment_intent(pi_id)     # the Payment Element pays a one-time PaymentIntent
    standin.refund_payment(pi_id, amount=100) # the dashboard refunds part of it
    standin.open_dispute(pi_id); standin.close_dispute(du_id, "won")
    for event in standin.events.log: ...      # deliver them in any order, twice, late
    standin.stop()

    StripeStandin(latency_ms=80, jitter_ms=40, rate_limit_per_second=25, endpoint_rate_limit_per_second=25)
    ... answers as late as Stripe and refuses a client that is too fast, as Stripe does (429 with
    `Stripe-Rate-Limited-Reason`); `standin.stats` counts requests and 429s per endpoint.

Modules, one per area: `wire` (form decoding, errors, lists), `state` (objects, expansion, clock,
event emission), `events` (signing, delivery, webhook endpoints), `customers`, `catalog`,
`subscriptions`, `billing` (invoices, charges, refunds), `payments` (one-time PaymentIntents and
disputes), `checkout` (subscription and payment mode), `hosted` (the Checkout page a browser pays on),
`simulate` (what happens at Stripe without an API call), `server` (HTTP plumbing and the uvicorn thread).
"""

from __future__ import annotations

from typing import Any

from ..limits import StandinStats, VendorLimits
from .events import EventLog, sign
from .server import ServerThread, build_app
from .simulate import Simulations
from .state import KeyGrant, State

# The API version the stand-in stamps on events; the same as the pinned `stripe` SDK's default.
API_VERSION = "2026-10-28.endive"

__all__ = ["API_VERSION", "StripeStandin", "sign"]


class StripeStandin(Simulations):
    def __init__(
        self,
        *,
        secret_key: str = "sk_test_standin_0123456789",
        webhook_secret: str = "whsec_standin_0123456789abcdef",
        api_version: str = API_VERSION,
        latency_ms: float = 0,
        jitter_ms: float = 0,
        rate_limit_per_second: float | None = None,
        endpoint_rate_limit_per_second: float | None = None,
    ) -> None:
        self.limits = VendorLimits(
            latency_ms=latency_ms,
            jitter_ms=jitter_ms,
            per_second=rate_limit_per_second,
            per_endpoint=endpoint_rate_limit_per_second,
        )
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.events = EventLog(webhook_secret)
        self.state = State(secret_key=secret_key, api_version=api_version, events=self.events)
        self._server: ServerThread | None = None

    def start(self) -> StripeStandin:
        self._server = ServerThread(build_app(self.state, self.limits))
        self._server.start()
        self.state.base_url = self.base_url
        return self

    def stop(self) -> None:
        self.events.close()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> StripeStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("start() the stand-in first")
        return f"http://127.0.0.1:{self._server.port}"

    def deliver_to(self, url: str, secret: str | None = None) -> None:
        """POST every future event, signed, to `url` (Stripe's webhook endpoint, in effect)."""
        self.events.deliver_to(url, secret)

    def add_key(self, key: str, *, livemode: bool = False, permissions: set[str] | None = None) -> str:
        """Answer to `key` too: a live key with `livemode`, a restricted key with only `permissions`
        (`rak_customer_read`, ...; others answer 403 as Stripe does)."""
        with self.state.lock:
            self.state.keys[key] = KeyGrant(livemode=livemode, permissions=permissions)
        return key

    def rate_limit(self, count: int = 1, *, retry_after: float | None = None) -> None:
        """Answer the next `count` API requests with 429 (with a `Retry-After` header, if given)."""
        with self.state.lock:
            self.state.rate_limit_next += count
            self.state.rate_limit_retry_after = retry_after

    @property
    def stats(self) -> StandinStats:
        """Requests and 429s per endpoint ("GET /v1/subscriptions/{id}")."""
        return self.limits.stats

    def advance(self, seconds: int) -> None:
        self.state.advance(seconds)

    def now(self) -> int:
        return self.state.now()

    def signed(
        self, event: dict[str, Any], *, secret: str | None = None, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        return self.events.signed(event, secret=secret, timestamp=timestamp)

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.state.requests
