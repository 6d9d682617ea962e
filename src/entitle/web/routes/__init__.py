"""Every router, in one list the app factory includes."""

from __future__ import annotations

from fastapi import APIRouter

from entitle.web.routes import auth, entitlements, events, health, me, webhook_endpoints
from entitle.web.routes import billing_appstore as appstore_billing_routes
from entitle.web.routes import billing_stripe as stripe_billing_routes
from entitle.web.routes import identity as identity_routes
from entitle.web.routes import webhooks_appstore as appstore_webhook_routes
from entitle.web.routes import webhooks_stripe as stripe_webhook_routes


def all_routers() -> list[APIRouter]:
    return [
        health.router,
        auth.router,
        me.router,
        webhook_endpoints.router,
        events.router,
        # Registered by their packages (one line each):
        entitlements.router,
        identity_routes.router,
        appstore_billing_routes.router,
        appstore_webhook_routes.router,
        stripe_billing_routes.router,
        stripe_webhook_routes.router,
    ]
