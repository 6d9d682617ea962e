"""The Stripe provider: webhook verification, batched processing, and what the billing services use.

Verification happens on the raw body before anything is stored (a forged event never reaches the
database). Every configured webhook secret is tried, so a secret can be rotated by listing the new one
next to the old one until Stripe stops signing with the old.

Processing takes every unprocessed event of one customer at once (`process_events`) and re-reads each
subscription they name once (`handlers.settle`). Before the batch is chosen, `read_slot` waits for the
gateway's pacer to allow that read: events that arrive while the read is queued join the batch, so a
renewal's several events cost one read, and the reads stay under Stripe's rate limits.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from entitle import untrusted_json
from entitle.core.catalog import Catalog
from entitle.core.guests import GuestSink
from entitle.core.models.events import ProviderEvent
from entitle.core.notices import TrialEndingWithoutCard
from entitle.core.purchases import PurchaseSink
from entitle.core.subscriptions import SubscriptionSink
from entitle.errors import EntitleError, ProviderUnavailable
from entitle.providers.base import IncomingEvent
from entitle.providers.stripe.client import (
    LIST_SUBSCRIPTIONS,
    RETRIEVE_PAYMENT_INTENT,
    RETRIEVE_SUBSCRIPTION,
    StripeGateway,
)
from entitle.providers.stripe.errors import StripeNotConfigured
from entitle.providers.stripe.handlers import (
    CUSTOMER_LEVEL,
    HANDLERS,
    PURCHASE_LEVEL,
    HandlerContext,
    invoice_subscription_id,
    settle,
)
from entitle.providers.stripe.mapping import object_id
from entitle.providers.stripe.purchases import PurchaseReconciler, is_entitle_purchase
from entitle.providers.stripe.reconcile import Reconciler
from entitle.settings import Settings

PROVIDER = "stripe"
# The endpoint `read_slot` reserved for the batch being processed in this task.
_reserved: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "entitle_stripe_reserved", default=None
)
# Invoice events whose handler reads the invoice's subscription, and nothing when it has none.
_INVOICE_EVENTS = ("invoice.paid", "invoice.payment_failed", "invoice.payment_action_required")
# Stripe's own default: https://docs.stripe.com/webhooks#verify-events
SIGNATURE_TOLERANCE_SECONDS = 300


class WebhookRejected(EntitleError):
    status_code = 400
    default_code = "invalid_signature"


@dataclass(frozen=True)
class StripeConfig:
    """The slice of the settings the Stripe provider and the web billing services need."""

    # A secret key is set: web payments are on.
    enabled: bool
    webhook_secrets: tuple[str, ...]
    grace_days: int
    # Where Stripe may send people back: the web app's origins, then the public URL.
    web_origins: tuple[str, ...]
    public_url: str
    # Stripe Tax (ENTITLE_STRIPE_AUTOMATIC_TAX): Stripe computes tax from the buyer's address.
    automatic_tax: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeConfig:
        return cls(
            enabled=settings.stripe_secret_key is not None,
            webhook_secrets=tuple(s.get_secret_value() for s in settings.stripe_webhook_secret),
            grace_days=settings.stripe_grace_days,
            web_origins=tuple(settings.web_origins),
            public_url=settings.public_url,
            automatic_tax=settings.stripe_automatic_tax,
        )


class StripeProvider:
    name = PROVIDER

    def __init__(
        self,
        *,
        config: StripeConfig,
        catalog: Catalog,
        sink: SubscriptionSink,
        gateway: StripeGateway | Callable[[], StripeGateway] | None,
        purchases: PurchaseSink | None = None,
        trial_ending_without_card: TrialEndingWithoutCard | None = None,
        guests: GuestSink | None = None,
    ) -> None:
        self.config = config
        # Who tells the person a trial ends with no card to pay what follows (`core.notices`).
        self.trial_ending_without_card = trial_ending_without_card
        self.catalog = catalog
        self.sink = sink
        # Where one-time purchases (payment-mode Checkout, PaymentIntents) are stored; without one they
        # are acknowledged and ignored.
        self.purchases = purchases
        # Where a visitor's paid Checkout is held until claimed (pay first, the account after).
        self.guests = guests
        # A factory: the gateway is built on first use, inside the event loop that will use its HTTP
        # connections (the app is often assembled before its loop runs).
        self._gateway = gateway if isinstance(gateway, StripeGateway) else None
        self._make_gateway = None if isinstance(gateway, StripeGateway) else gateway

    @property
    def configured(self) -> bool:
        return self._gateway is not None or (self._make_gateway is not None and self.config.enabled)

    @property
    def gateway(self) -> StripeGateway:
        if self._gateway is None:
            if self._make_gateway is None or not self.config.enabled:
                raise StripeNotConfigured()
            self._gateway = self._make_gateway()
        return self._gateway

    @property
    def reconciler(self) -> Reconciler:
        return Reconciler(self.gateway, self.catalog, self.config.grace_days, self.sink)

    @property
    def purchase_reconciler(self) -> PurchaseReconciler | None:
        if self.purchases is None:
            return None
        return PurchaseReconciler(self.gateway, self.catalog, self.purchases, self.reconciler)

    async def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> IncomingEvent:
        """Check `Stripe-Signature` against every configured secret, then parse the event."""
        secrets = self.config.webhook_secrets
        if not secrets:
            raise ProviderUnavailable(
                "Stripe webhooks are not configured on this server: set ENTITLE_STRIPE_WEBHOOK_SECRET.",
                code="stripe_webhooks_not_configured",
            )
        signature = headers.get("stripe-signature")
        if not signature:
            raise WebhookRejected("The Stripe-Signature header is missing.", code="missing_signature")
        if not any(_signed_by(body, signature, secret) for secret in secrets):
            raise WebhookRejected("The Stripe-Signature header does not match this body, or is too old.")
        try:
            event = untrusted_json.loads(body)
            obj = event["data"]["object"]
            event_id, event_type = str(event["id"]), str(event["type"])
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise WebhookRejected("The event is not a Stripe event.", code="malformed_event") from exc
        if not isinstance(obj, dict) or not event_id.startswith("evt_"):
            raise WebhookRejected("The event is not a Stripe event.", code="malformed_event")
        customer = obj.get("id") if obj.get("object") == "customer" else object_id(obj.get("customer"))
        return IncomingEvent(
            event_id=event_id,
            type=event_type,
            # Work is serialized and batched per customer: every event we act on names one.
            ordering_key=str(customer) if customer else None,
            occurred_at=_moment(event.get("created")),
        )

    @contextlib.asynccontextmanager
    async def read_slot(self, events: Sequence[ProviderEvent]) -> AsyncIterator[bool]:
        """Wait until the pacer lets the batch's read start; then every event stored meanwhile joins the
        batch, since the read starts after it is chosen. When none of `events` needs a read, they are
        acknowledged on their own (an event needing one that arrived meanwhile waits for its own slot)."""
        types = {kind for event in events if event.type in HANDLERS and (kind := _read_kind(event))}
        if not types or not self.configured:
            yield False
            return
        endpoint = (
            LIST_SUBSCRIPTIONS
            if types & CUSTOMER_LEVEL
            else RETRIEVE_PAYMENT_INTENT
            if types <= PURCHASE_LEVEL
            else RETRIEVE_SUBSCRIPTION
        )
        async with self.gateway.pacer.reserved(endpoint):
            token = _reserved.set(endpoint)
            try:
                yield True
            finally:
                _reserved.reset(token)

    async def process_events(self, db: AsyncSession, events: Sequence[ProviderEvent]) -> list[str]:
        """Called by the inbox inside its transaction; raising leaves the batch to be retried."""
        payloads: list[dict[str, Any]] = [json.loads(event.raw_body) for event in events]
        if not any(str(p.get("type")) in HANDLERS for p in payloads):
            return [f"acknowledged: entitle does not act on {p.get('type')}" for p in payloads]
        context = HandlerContext(
            db=db,
            reconciler=self.reconciler,
            purchases=self.purchase_reconciler,
            trial_ending_without_card=self.trial_ending_without_card,
            guests=self.guests,
        )
        return await settle(context, payloads, purchases_first=_reserved.get() == RETRIEVE_PAYMENT_INTENT)

    async def aclose(self) -> None:
        if self._gateway is not None:
            await self._gateway.aclose()


def _read_kind(event: ProviderEvent) -> str | None:
    """What read the event causes, named by the event type that causes it; None for none. Checkout in
    payment mode and its receipt invoice concern a PaymentIntent, not a subscription: reserving a
    subscription read for them would fail the batch when the PaymentIntent read comes first."""
    if event.type not in ("checkout.session.completed", "payment_intent.succeeded", *_INVOICE_EVENTS):
        return event.type
    try:
        obj = json.loads(event.raw_body)["data"]["object"]
    except (ValueError, KeyError, TypeError):
        return event.type
    if not isinstance(obj, dict):
        return event.type
    if event.type == "payment_intent.succeeded":
        # A subscription invoice's payment is acknowledged without a read (its invoice events settle
        # it): reserving a PaymentIntent read for it would fail a renewal batch it shares.
        return event.type if is_entitle_purchase(obj) else None
    if event.type == "checkout.session.completed":
        return "payment_intent.succeeded" if obj.get("mode") == "payment" else event.type
    # An invoice without a subscription (a one-time purchase's receipt) is acknowledged without a read.
    return event.type if invoice_subscription_id(obj) is not None else None


def _moment(created: Any) -> datetime | None:
    """The event's `created`, or None when it is not a plausible Unix time (never a 500)."""
    if not isinstance(created, int) or isinstance(created, bool):
        return None
    try:
        return datetime.fromtimestamp(created, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _signed_by(body: bytes, signature: str, secret: str) -> bool:
    try:
        stripe.WebhookSignature.verify_header(body, signature, secret, SIGNATURE_TOLERANCE_SECONDS)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError):
        return False
    return True


def stripe_provider(providers: Mapping[str, Any]) -> StripeProvider:
    """The configured Stripe provider; StripeNotConfigured (503) when web payments are off."""
    provider = providers.get(PROVIDER)
    if not isinstance(provider, StripeProvider) or not provider.configured:
        raise StripeNotConfigured()
    return provider
