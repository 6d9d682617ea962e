"""The Stripe card's actions on /admin/setup: save and check the keys, connect (webhook endpoint, its
secret saved, catalog pushed), and ask Stripe for a test event whose arrival the card then shows.

Thin: each action is the set-up service's functions (services.setup.stripe_setup) in order, with the
runtime settings saved in between; a refusal re-renders the page with Stripe's own sentence on the card.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import Account
from entitle.errors import EntitleError
from entitle.providers.stripe.client import StripeGateway
from entitle.services.identity import operators
from entitle.services.setup import stripe_setup
from entitle.services.setup.runtime_settings import reload_settings, save_settings, source_of
from entitle.web.deps import SessionDep
from entitle.web.pages.admin import _operator
from entitle.web.pages.admin_setup import _audit, _setup_page
from entitle.web.pages.forms import read_form
from entitle.web.pages.rendering import redirect
from entitle.web.pages.visits import PageVisit, Visit

router = APIRouter(prefix="/admin/setup/stripe", include_in_schema=False)
KEY_FIELDS = ("stripe_secret_key", "stripe_publishable_key")


@router.post("/connect")
async def connect(request: Request, visit: Visit, db: SessionDep) -> Response:
    """Keys proved and saved, the endpoint connected (its secret saved), the catalog pushed."""
    fields = await read_form(request, visit)
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    try:
        await _connect(visit, db, operator, fields)
    except EntitleError as exc:
        await db.rollback()
        return await _setup_page(
            visit, request, db, error=exc.message, failed="stripe", status=exc.status_code
        )
    return redirect(visit, "/admin/setup?notice=stripe_connected#card-stripe")


async def _connect(visit: PageVisit, db: AsyncSession, operator: Account, fields: dict[str, str]) -> None:
    context = visit.context
    settings = context.settings
    current = settings.stripe_secret_key.get_secret_value() if settings.stripe_secret_key else ""
    secret = fields.get("stripe_secret_key", "").strip() or current
    publishable = fields.get("stripe_publishable_key", "").strip() or settings.stripe_publishable_key
    await stripe_setup.check_keys(secret, publishable, api_base=settings.stripe_api_base)
    keys = {"stripe_secret_key": secret, "stripe_publishable_key": publishable}
    in_use = {"stripe_secret_key": current, "stripe_publishable_key": settings.stripe_publishable_key or ""}
    changed: dict[str, str | None] = {
        name: value
        for name, value in keys.items()
        if value and value != in_use[name] and source_of(context, name) != "environment"
    }
    by = operators.operator_label(operator)
    if changed:
        await save_settings(db, context, changed, by=by)
        await _audit(db, operator, "stripe", changed)
        await db.commit()
    webhook_in_environment = source_of(context, "stripe_webhook_secret") == "environment"
    gateway = StripeGateway(secret, api_base=settings.stripe_api_base)
    try:
        connection = await stripe_setup.connect_webhook(
            gateway,
            public_url=settings.public_url,
            catalog=context.catalog,
            known_secrets=[s.get_secret_value() for s in settings.stripe_webhook_secret],
            # A secret the environment sets cannot be replaced from here: keep the endpoint Stripe has.
            recreate_unknown=not webhook_in_environment,
        )
    finally:
        await gateway.aclose()
    new_secret = connection.endpoint.secret
    if new_secret is not None and not webhook_in_environment:
        await save_settings(db, context, {"stripe_webhook_secret": new_secret}, by=by)
        await _audit(db, operator, "stripe", {"stripe_webhook_secret": new_secret})
        await db.commit()
    await reload_settings(context)


@router.post("/test-event")
async def test_event(request: Request, visit: Visit, db: SessionDep) -> Response:
    """Ask Stripe to send an event to the endpoint; the card shows when it arrives."""
    await read_form(request, visit)
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    settings = visit.context.settings
    try:
        if settings.stripe_secret_key is None:
            raise stripe_setup.StripeKeysRefused("Save the Stripe keys first.")
        gateway = StripeGateway(
            settings.stripe_secret_key.get_secret_value(), api_base=settings.stripe_api_base
        )
        try:
            await stripe_setup.send_test_event(gateway)
        finally:
            await gateway.aclose()
    except EntitleError as exc:
        return await _setup_page(
            visit, request, db, error=exc.message, failed="stripe", status=exc.status_code
        )
    return redirect(visit, "/admin/setup?notice=stripe_test_event#card-stripe")
