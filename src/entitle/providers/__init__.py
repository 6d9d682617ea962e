"""Providers: one package per vendor behind one interface (`base.Provider`).

- `stripe/`: web payments (Checkout, Payment Element, Billing Portal) and Stripe webhooks.
- `appstore/`: StoreKit 2 purchases, App Store Server Notifications V2 and the Server API.

Sign in with Apple's server notifications are a provider too (`services.identity.apple_signin`), because what
they do is account business. The registry, a `dict[str, Provider]`, is built where the app is assembled
(`entitle.context.build_providers`); adding a store is one new package here and one entry there.
"""

from entitle.providers.base import IncomingEvent, ParkEvent, Provider, no_slot

__all__ = ["IncomingEvent", "ParkEvent", "Provider", "no_slot"]
