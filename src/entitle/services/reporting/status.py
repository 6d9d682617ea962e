"""What this server can do for a client: which stores take payments and which ways to sign in work.

Both clients ask before showing a paywall or a sign-in screen, so they offer only what works. It is read
from the settings alone, and says what is configured in booleans and two modes, never a secret or the
name of a setting (anyone may ask).
"""

from __future__ import annotations

from typing import Any

from entitle.settings import Settings

# Stripe's live keys; any other key (sk_test_, rk_test_) only moves test money.
_LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")


def server_status(settings: Settings) -> dict[str, Any]:
    """`GET /v1/status`: stores, sign-in methods and guest checkout, as configured here."""
    key = settings.stripe_secret_key.get_secret_value() if settings.stripe_secret_key else None
    stripe_mode = None if key is None else "live" if key.startswith(_LIVE_KEY_PREFIXES) else "test"
    # App Store data is verified against Apple's roots (shipped, or the configured ones, read at start-up)
    # for the app's bundle id; Production data also needs the app's Apple id, without it only Sandbox.
    app_store = bool(settings.apple_bundle_id)
    environment = None if not app_store else "production" if settings.apple_app_id is not None else "sandbox"
    return {
        "stores": {
            "stripe": {"configured": key is not None, "mode": stripe_mode},
            "app_store": {"configured": app_store, "environment": environment},
        },
        "sign_in": {
            # Email and password is always on (its mails go to the log until mail is configured).
            "password": True,
            "apple": bool(settings.apple_signin_client_ids),
            "google": bool(settings.google_client_ids),
        },
        # Paying first needs Stripe to pay in.
        "guest_checkout": settings.guest_checkout and key is not None,
    }
