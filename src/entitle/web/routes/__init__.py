"""Every router, in one list the app factory includes."""

from __future__ import annotations

from fastapi import APIRouter

from entitle.web.routes import accounts as support_routes
from entitle.web.routes import (
    auth,
    balances,
    entitlements,
    events,
    health,
    invoices,
    me,
    reports,
    status,
    streams,
    webhook_endpoints,
    webhooks,
)
from entitle.web.routes import billing_appstore as appstore_billing_routes
from entitle.web.routes import billing_stripe as stripe_billing_routes
from entitle.web.routes import identity as identity_routes


def all_routers() -> list[APIRouter]:
    return [
        health.router,
        status.router,
        auth.router,
        me.router,
        webhook_endpoints.router,
        webhooks.router,
        support_routes.router,
        events.router,
        reports.router,
        entitlements.router,
        balances.router,
        streams.router,
        identity_routes.router,
        appstore_billing_routes.router,
        stripe_billing_routes.router,
        invoices.router,
    ]
