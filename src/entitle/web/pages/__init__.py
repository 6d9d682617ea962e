"""The hosted pages (pricing, sign-in, the account) and the operators' dashboard: server-rendered."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles


def install_pages(app: FastAPI) -> None:
    from entitle.web.pages import (
        admin,
        admin_billing,
        admin_setup,
        admin_setup_alerts,
        admin_setup_apple,
        admin_setup_stripe,
        assets,
        customer,
        guest,
        provider_sign_in,
    )

    routers: list[APIRouter] = [
        assets.router,
        customer.router,
        guest.router,
        provider_sign_in.router,
        admin.router,
        admin_billing.router,
        # Before admin_setup: its `POST /admin/setup/{key}` would take `/admin/setup/backups` too.
        admin_setup_alerts.router,
        admin_setup_stripe.router,
        admin_setup.router,
        admin_setup_apple.router,
    ]
    for router in routers:
        app.include_router(router)
    app.mount("/assets/static", StaticFiles(packages=[("entitle", "web/static")]), name="static")
