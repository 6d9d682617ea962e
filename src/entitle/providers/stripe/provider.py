"""The Stripe provider object the app context holds: webhook verification and inbox processing.

Verification happens on the raw body before anything is stored (a forged event never reaches the
database). Every configured webhook secret is tried, so a secret can be rotated by listing the new
one next to the old one until Stripe stops signing with the old.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from entitle import untrusted_json
from entitle.core.models.events import ProviderEvent
from entitle.errors import EntitleError, ProviderUnavailable
from entitle.providers.stripe.client import StripeGateway
from entitle.providers.stripe.errors import StripeNotConfigured
from entitle.providers.stripe.handlers import HandlerContext, handle
from entitle.providers.stripe.mapping import object_id
from entitle.providers.stripe.reconcile import Reconciler

if TYPE_CHECKING:
    from entitle.context import AppContext

PROVIDER = "stripe"
# Stripe's own default: https://docs.stripe.com/webhooks#verify-events
SIGNATURE_TOLERANCE_SECONDS = 300


class WebhookRejected(EntitleError):
    status_code = 400
    default_code = "invalid_signature"


@dataclass(frozen=True)
class VerifiedEvent:
    id: str
    type: str
    # The customer the event concerns: the inbox serializes work per customer on it.
    customer_id: str | None
    created: datetime | None


class StripeProvider:
    def __init__(self, context: AppContext, *, gateway: StripeGateway | None = None) -> None:
        self.settings = context.settings
        self.catalog = context.catalog
        self._gateway = gateway

    @property
    def configured(self) -> bool:
        return self._gateway is not None or self.settings.stripe_secret_key is not None

    @property
    def gateway(self) -> StripeGateway:
        # Built on first use, inside the event loop that will use its HTTP connections.
        if self._gateway is None:
            self._gateway = StripeGateway.from_settings(self.settings)
        return self._gateway

    @property
    def reconciler(self) -> Reconciler:
        return Reconciler(self.gateway, self.catalog, self.settings.stripe_grace_days)

    def verify(self, body: bytes, signature: str | None) -> VerifiedEvent:
        """Check `Stripe-Signature` against every configured secret, then parse the event."""
        secrets = [s.get_secret_value() for s in self.settings.stripe_webhook_secret]
        if not secrets:
            raise ProviderUnavailable(
                "Stripe webhooks are not configured on this server: set ENTITLE_STRIPE_WEBHOOK_SECRET.",
                code="stripe_webhooks_not_configured",
            )
        if not signature:
            raise WebhookRejected("The Stripe-Signature header is missing.", code="missing_signature")
        if not any(_signed_by(body, signature, secret) for secret in secrets):
            raise WebhookRejected("The Stripe-Signature header does not match this body, or is too old.")
        try:
            event = untrusted_json.loads(body)
            obj = event["data"]["object"]
            event_id, event_type = str(event["id"]), str(event["type"])
        except (ValueError, KeyError, TypeError) as exc:
            raise WebhookRejected("The event is not a Stripe event.", code="malformed_event") from exc
        if not isinstance(obj, dict) or not event_id.startswith("evt_"):
            raise WebhookRejected("The event is not a Stripe event.", code="malformed_event")
        customer = obj.get("id") if obj.get("object") == "customer" else object_id(obj.get("customer"))
        return VerifiedEvent(
            id=event_id,
            type=event_type,
            customer_id=str(customer) if customer else None,
            created=_moment(event.get("created")),
        )

    async def process_event(self, db: AsyncSession, event: ProviderEvent) -> str | None:
        """Called by the inbox inside its transaction; raising leaves the row failed for a retry."""
        payload: dict[str, Any] = json.loads(event.raw_body)
        return await handle(HandlerContext(db=db, reconciler=self.reconciler), payload)

    async def aclose(self) -> None:
        if self._gateway is not None:
            await self._gateway.aclose()


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


def stripe_provider(context: AppContext) -> StripeProvider:
    """The configured Stripe provider; StripeNotConfigured (503) when web payments are off."""
    provider = context.providers.get(PROVIDER)
    if not isinstance(provider, StripeProvider) or not provider.configured:
        raise StripeNotConfigured()
    return provider
