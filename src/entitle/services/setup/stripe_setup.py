"""Setting Stripe up from the dashboard: prove the keys, connect the webhook endpoint, push the catalog,
send a test event and see it arrive.

Decisions this module owns:
- Keys are proved with reads only: the balance (which any secret key may read, and which says whether
  the key is live) and one object of each list entitle reads (customers, subscriptions, prices,
  webhook endpoints), so a restricted key missing a permission is caught now, in Stripe's own words,
  rather than on a customer's first checkout. A publishable key cannot read anything about its account,
  so it is checked for its form and its mode only: a test secret key with a live publishable key (or
  the reverse) is refused, as Stripe.js would then create objects the server cannot see.
- The webhook endpoint is created or reused by URL (`providers.stripe.webhook_endpoints`); one whose
  secret this server does not have is replaced, since Stripe's API can neither show nor roll it.
- Stripe's API has no "send a test webhook" call for an endpoint (the v2 event-destination ping sends
  a thin `v2.core.event_destination.ping`, which a snapshot endpoint is not, and the CLI's `trigger`
  just makes real objects). So the test event is real and harmless: a customer named "entitle webhook
  test" is created and deleted at once, and Stripe sends `customer.deleted`, one of the events the
  endpoint listens to, signed with the endpoint's secret. Its metadata marks it, and the handler only
  acknowledges it. Its arrival is read from the inbox (the newest Stripe event's `received_at`): no
  table of its own.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import stripe
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import Catalog
from entitle.core.models.events import ProviderEvent
from entitle.db.types import utcnow
from entitle.errors import EntitleError, InvalidRequest
from entitle.providers.stripe.catalog_push import PushResult, push_catalog
from entitle.providers.stripe.client import StripeGateway
from entitle.providers.stripe.errors import StripeKeyRefused
from entitle.providers.stripe.handlers import webhook_event_types
from entitle.providers.stripe.webhook_endpoints import (
    TEST_EVENT_KEY,
    EndpointResult,
    ensure_webhook_endpoint,
)
from entitle.services.setup.cards import Card
from entitle.services.setup.timing import ago

if TYPE_CHECKING:
    from entitle.context import AppContext

Mode = Literal["test", "live"]
PROVIDER = "stripe"
WEBHOOK_PATH = "/webhooks/stripe"
FIELDS = ["stripe_secret_key", "stripe_publishable_key", "stripe_webhook_secret"]
# The lists entitle reads in its work (webhooks, sync, checkout): a restricted key must be allowed them.
READS = ("/v1/customers", "/v1/subscriptions", "/v1/prices", "/v1/webhook_endpoints")
_SECRET_KEY = re.compile(r"(sk|rk)_(test|live)_[0-9A-Za-z_]+")
_PUBLISHABLE_KEY = re.compile(r"pk_(test|live)_[0-9A-Za-z_]+")


class StripeKeysRefused(InvalidRequest):
    """The keys pasted do not work; the message is Stripe's reason (or ours, for their form)."""

    default_code = "stripe_keys_refused"


@dataclass(frozen=True)
class KeyCheck:
    mode: Mode
    # Stripe's answer: whether the account's balance is a live one.
    livemode: bool


@dataclass(frozen=True)
class Connection:
    endpoint: EndpointResult
    catalog: list[PushResult]


@dataclass(frozen=True)
class TestEvent:
    # The throwaway customer whose deletion is the event.
    customer_id: str
    sent_at: datetime


def key_mode(key: str) -> Mode | None:
    """test or live from a key's prefix; None for anything that is not a Stripe key."""
    for pattern in (_SECRET_KEY, _PUBLISHABLE_KEY):
        match = pattern.fullmatch(key)
        if match:
            return "live" if match.groups()[-1] == "live" else "test"
    return None


async def check_keys(
    secret_key: str, publishable_key: str | None, *, api_base: str = stripe.DEFAULT_API_BASE
) -> KeyCheck:
    """Prove the pair with reads; raise StripeKeysRefused with Stripe's reason when it refuses."""
    secret_key, publishable = secret_key.strip(), (publishable_key or "").strip()
    if not _SECRET_KEY.fullmatch(secret_key):
        raise StripeKeysRefused(
            "That is not a Stripe secret key: it starts with sk_test_, sk_live_, rk_test_ or rk_live_."
        )
    mode = key_mode(secret_key)
    assert mode is not None
    if publishable:
        if not _PUBLISHABLE_KEY.fullmatch(publishable):
            raise StripeKeysRefused(
                "That is not a Stripe publishable key: it starts with pk_test_ or pk_live_."
            )
        if key_mode(publishable) != mode:
            raise StripeKeysRefused(
                f"The secret key is a {mode} key but the publishable key is a {key_mode(publishable)} key: "
                "paste both from the same mode of the Stripe Dashboard."
            )
    # No retries: a person is waiting, and a wrong key is not going to become right.
    gateway = StripeGateway(secret_key, api_base=api_base, max_network_retries=0)
    try:
        balance = await gateway.retrieve_balance()
        for path in READS:
            await gateway.first_of(path)
    except StripeKeyRefused as exc:
        # Stripe's own words: the key masked ("Invalid API Key provided: sk_test_****1234"), or the
        # permission a restricted key lacks.
        raise StripeKeysRefused(exc.reason) from exc
    except EntitleError as exc:
        raise StripeKeysRefused(exc.message, code=exc.code) from exc
    finally:
        await gateway.aclose()
    livemode = bool(balance.get("livemode"))
    if livemode != (mode == "live"):
        raise StripeKeysRefused(
            f"Stripe says this {mode} key belongs to {'live' if livemode else 'test'} mode."
        )
    return KeyCheck(mode=mode, livemode=livemode)


async def connect_webhook(
    gateway: StripeGateway,
    *,
    public_url: str,
    catalog: Catalog,
    known_secrets: list[str],
    recreate_unknown: bool = True,
) -> Connection:
    """Create or reuse the endpoint at `{public_url}/webhooks/stripe`, then push the catalog.

    The endpoint's new secret (`connection.endpoint.secret`, None when reused) is the caller's to save:
    until it is, Stripe's deliveries are refused and Stripe retries them (for up to three days).
    """
    endpoint = await ensure_webhook_endpoint(
        gateway,
        url=public_url.rstrip("/") + WEBHOOK_PATH,
        events=webhook_event_types(),
        known_secrets=known_secrets,
        recreate_unknown=recreate_unknown,
    )
    return Connection(endpoint=endpoint, catalog=await push_catalog(gateway, catalog))


async def send_test_event(gateway: StripeGateway) -> TestEvent:
    """Make Stripe send `customer.deleted` to the endpoint: create a marked customer, delete it."""
    key = "entitle-webhook-test-" + secrets.token_hex(8)
    customer = await gateway.create_test_customer(metadata={TEST_EVENT_KEY: "true"}, idempotency_key=key)
    await gateway.delete_customer(str(customer["id"]))
    return TestEvent(customer_id=str(customer["id"]), sent_at=utcnow())


async def last_event_received(db: AsyncSession) -> datetime | None:
    """When the newest Stripe event reached this server (any process), or None if none ever did."""
    return await db.scalar(
        select(ProviderEvent.received_at)
        .where(ProviderEvent.provider == PROVIDER)
        .order_by(ProviderEvent.received_at.desc())
        .limit(1)
    )


async def card(db: AsyncSession, context: AppContext) -> Card:
    """Stripe's card: proved now against Stripe with the effective settings."""
    settings = context.settings
    now = utcnow()

    def made(state: Literal["not_set", "set", "verified", "failing"], sentence: str) -> Card:
        return Card(
            key="stripe", title="Stripe", state=state, sentence=sentence, fields=FIELDS, checked_at=now
        )

    if settings.stripe_secret_key is None:
        return made(
            "not_set",
            "Paste the secret and publishable keys from the Stripe Dashboard (Developers > API keys).",
        )
    secret = settings.stripe_secret_key.get_secret_value()
    try:
        check = await check_keys(secret, settings.stripe_publishable_key, api_base=settings.stripe_api_base)
    except StripeKeysRefused as exc:
        return made("failing", exc.message)
    mode = f"{check.mode.capitalize()} mode"
    if not settings.stripe_webhook_secret:
        return made("set", f"{mode}: the keys work. Connect the webhook endpoint next.")
    url = settings.public_url.rstrip("/") + WEBHOOK_PATH
    gateway = StripeGateway(secret, api_base=settings.stripe_api_base, max_network_retries=0)
    try:
        endpoints = await gateway.list_webhook_endpoints()
    except EntitleError as exc:
        return made("failing", exc.message)
    finally:
        await gateway.aclose()
    enabled = [e for e in endpoints if e.get("url") == url and e.get("status") == "enabled"]
    if not enabled:
        return made("failing", f"{mode}: Stripe has no enabled webhook endpoint for {url}. Connect it again.")
    missing = set(webhook_event_types()) - set(enabled[0].get("enabled_events") or [])
    if missing and "*" not in (enabled[0].get("enabled_events") or []):
        return made(
            "failing",
            f"{mode}: the webhook endpoint does not send {', '.join(sorted(missing))}. Connect it again.",
        )
    last = await last_event_received(db)
    heard = f"last event received {ago(last, now)}" if last else "no event received yet: send a test event"
    if settings.stripe_publishable_key is None:
        return made(
            "set",
            f"{mode}: keys and webhook work; {heard}. Paste the publishable key for the Payment Element.",
        )
    return made("verified", f"{mode}: keys and webhook endpoint work; {heard}.")


__all__ = [
    "Connection",
    "KeyCheck",
    "StripeKeysRefused",
    "TestEvent",
    "ago",
    "card",
    "check_keys",
    "connect_webhook",
    "key_mode",
    "last_event_received",
    "send_test_event",
]
