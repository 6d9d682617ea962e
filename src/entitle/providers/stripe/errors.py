"""What can go wrong talking to Stripe, in entitle's terms.

EntitleError
├── PaymentRequired            402  the card was declined or needs authentication (Stripe card_error)
├── NotFound
│   └── StripeObjectMissing    404  Stripe says the object does not exist (resource_missing)
├── Conflict
│   └── (stripe_idempotency_conflict)  the same idempotency key was reused with other parameters
└── ProviderUnavailable        503  Stripe did not answer, rate-limited us past our retries, refused
    │                               our key, or rejected a request we built (our bug, not the caller's)
    ├── StripeKeyRefused       503  Stripe answered 401/403 to our key (`reason`: Stripe's own sentence)
    └── StripeNotConfigured    503  no ENTITLE_STRIPE_SECRET_KEY: web payments are off
"""

from __future__ import annotations

from entitle.errors import EntitleError, NotFound, ProviderUnavailable


class PaymentRequired(EntitleError):
    status_code = 402
    default_code = "payment_failed"


class StripeObjectMissing(NotFound):
    default_code = "stripe_resource_missing"


class StripeKeyRefused(ProviderUnavailable):
    default_code = "stripe_misconfigured"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        # What Stripe said, e.g. "Invalid API Key provided: sk_test_****1234" (Stripe masks the key).
        self.reason = reason or message


class StripeNotConfigured(ProviderUnavailable):
    default_code = "stripe_not_configured"

    def __init__(self) -> None:
        super().__init__("Stripe is not configured on this server: set ENTITLE_STRIPE_SECRET_KEY.")
