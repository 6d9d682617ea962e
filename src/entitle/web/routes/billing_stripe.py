"""Web billing through Stripe: Checkout, the Payment Element, the Billing Portal, plan changes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.models.accounts import Account
from entitle.errors import Unauthorized
from entitle.providers.stripe.provider import StripeProvider, stripe_provider
from entitle.services.billing import billing_stripe, guest_checkout
from entitle.services.billing.tax import TaxDetails
from entitle.services.identity.accounts import load_account
from entitle.web.deps import ContextDep, CurrentAccount, SessionDep, client_ip, get_signed_in
from entitle.web.guest_cookie import browser_secret, remember_browser
from entitle.web.schemas import StrictBody

router = APIRouter(prefix="/v1/billing/stripe", tags=["billing"])


async def get_stripe(context: ContextDep) -> StripeProvider:
    return stripe_provider(context.providers)


StripeDep = Annotated[StripeProvider, Depends(get_stripe)]
# The hosted account page (sign-in, plan, manage billing), where a browser without a token is sent.
ACCOUNT_PAGE = "/account"

_PRODUCT = Field(min_length=1, max_length=64)
_URL = Field(default=None, max_length=2000)


_QUANTITY = Field(
    default=None,
    ge=1,
    le=10_000,
    description="How many to buy (a one-time product, up to its `max_quantity`; 422 `invalid_quantity` "
    "beyond it). A subscription is bought one at a time.",
)


class Address(StrictBody):
    line1: str | None = Field(default=None, max_length=200)
    line2: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=200)
    state: str | None = Field(default=None, max_length=200)
    postal_code: str | None = Field(default=None, min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2, upper case (`DE`, `US`).")


class TaxId(StrictBody):
    type: str = Field(pattern=r"^[a-z]{2,3}_[a-z0-9_]{2,20}$", description="Stripe's tax id type (`eu_vat`).")
    value: str = Field(min_length=1, max_length=64)


_PROMOTION_CODE = Field(
    default=None,
    min_length=1,
    max_length=200,
    description='A promotion code as the customer types it ("LAUNCH20"), looked up at Stripe. 422 '
    "`invalid_promotion_code` with the reason when Stripe does not know it or it does not apply (inactive, "
    "expired, used up, restricted to other products, customers or amounts). On Checkout and subscriptions "
    "it becomes the discount; on a one-time PaymentIntent the amount is reduced.",
)


class CheckoutBody(StrictBody):
    product: str = _PRODUCT
    quantity: int | None = _QUANTITY
    promotion_code: str | None = _PROMOTION_CODE
    success_url: str | None = _URL
    cancel_url: str | None = _URL


class TaxFields(StrictBody):
    """What Stripe Tax needs on the Payment Element paths, where no Stripe page asks for it."""

    address: Address | None = Field(
        default=None,
        description="The billing address Stripe Tax computes tax from (when the store collects tax: "
        "422 `address_required` without one unless the customer already has one).",
    )
    tax_id: TaxId | None = Field(
        default=None, description="A business buyer's tax id, when tax is collected."
    )


class PaymentBody(TaxFields):
    product: str = _PRODUCT
    quantity: int | None = _QUANTITY
    promotion_code: str | None = _PROMOTION_CODE


class ProductBody(StrictBody):
    product: str = _PRODUCT
    promotion_code: str | None = _PROMOTION_CODE


class SubscriptionStartBody(ProductBody, TaxFields):
    pass


_SUBSCRIPTION_ID = Field(
    default=None,
    min_length=1,
    max_length=255,
    description="The subscription to act on, as `subscriptions[].id` in the entitlements answer lists it. "
    "Required when the account has more than one live subscription in Stripe (422 `subscription_required` "
    "names them); may be left out when it has one.",
)


class SubscriptionBody(StrictBody):
    subscription_id: str | None = _SUBSCRIPTION_ID


class PreviewChangeBody(StrictBody):
    product: str = _PRODUCT
    subscription_id: str | None = _SUBSCRIPTION_ID


class ChangeBody(StrictBody):
    product: str = _PRODUCT
    subscription_id: str | None = _SUBSCRIPTION_ID
    # The moment the preview priced; passing it back charges exactly what the preview showed.
    proration_date: int | None = Field(default=None, ge=0, le=2**40)


class PortalBody(StrictBody):
    return_url: str | None = _URL


async def _account_or_guest(request: Request, context: AppContext, db: AsyncSession) -> Account | None:
    """The signed-in account; None for a visitor when guest checkout is on (a request that sends a token
    is never a visitor: a bad token is still a 401)."""
    try:
        claims = await get_signed_in(request, context, db)
    except Unauthorized:
        if not context.settings.guest_checkout or request.headers.get("authorization"):
            raise
        return None
    return await load_account(db, claims.account_id)


@router.post("/checkout")
async def checkout(
    body: CheckoutBody,
    request: Request,
    response: Response,
    context: ContextDep,
    db: SessionDep,
) -> dict[str, Any]:
    """Hosted Checkout: subscription mode for a subscription, payment mode for a one-time product.

    Without a token, when guest checkout is on (ENTITLE_GUEST_CHECKOUT), Checkout opens for a visitor:
    Stripe collects the email, and this browser (a cookie set on this answer) may claim what it pays."""
    account = await _account_or_guest(request, context, db)
    stripe = stripe_provider(context.providers)
    if account is None:
        # Anyone may open one: limited per client IP like sign-in, so a script cannot fill Stripe with them.
        await context.rate_limiter.hit("guest_checkout", ip=client_ip(request))
        secret = browser_secret(request, context) or guest_checkout.new_browser_secret()
        session = await guest_checkout.start_guest_checkout(
            db,
            stripe,
            body.product,
            browser_secret=secret,
            success_url=body.success_url,
            cancel_url=body.cancel_url,
            quantity=body.quantity,
            promotion_code=body.promotion_code,
        )
        remember_browser(response, context, secret)
        return session
    return await billing_stripe.start_checkout(
        db,
        stripe,
        account,
        body.product,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        quantity=body.quantity,
        promotion_code=body.promotion_code,
    )


@router.get("/checkout/{session_id}")
async def checkout_status(
    session_id: Annotated[str, Path(min_length=1, max_length=255)],
    request: Request,
    context: ContextDep,
    db: SessionDep,
) -> dict[str, Any]:
    """`{id, status, payment_status, product, fulfilled}` of one of this account's Checkout Sessions;
    `fulfilled` once what it sold is in the account's answer. Without a token (guest checkout on), only
    the browser that opened the session gets an answer (404 for any other)."""
    account = await _account_or_guest(request, context, db)
    stripe = stripe_provider(context.providers)
    if account is None:
        # A GET that may record the payment (before the webhook): a transaction of its own.
        async with context.database.transaction() as tx:
            return await guest_checkout.guest_status(tx, stripe, session_id, browser_secret(request, context))
    return await billing_stripe.checkout_status(db, stripe, account, session_id)


@router.post("/payment")
async def payment(
    body: PaymentBody, account: CurrentAccount, stripe: StripeDep, db: SessionDep
) -> dict[str, Any]:
    """`{payment_intent_id, client_secret}` for the Payment Element, for a one-time product only."""
    return await billing_stripe.start_payment(
        db,
        stripe,
        account,
        body.product,
        body.quantity,
        body.promotion_code,
        _tax_details(body.address, body.tax_id),
    )


@router.post("/subscription")
async def subscription(
    body: SubscriptionStartBody, account: CurrentAccount, stripe: StripeDep, db: SessionDep
) -> dict[str, Any]:
    return await billing_stripe.start_subscription(
        db, stripe, account, body.product, body.promotion_code, _tax_details(body.address, body.tax_id)
    )


def _tax_details(address: Address | None, tax_id: TaxId | None) -> TaxDetails:
    return TaxDetails(
        address=address.model_dump(exclude_none=True) if address else None,
        tax_id=(tax_id.type, tax_id.value) if tax_id else None,
    )


@router.post("/portal")
async def portal(
    account: CurrentAccount, stripe: StripeDep, db: SessionDep, body: PortalBody | None = None
) -> dict[str, Any]:
    return await billing_stripe.portal(db, stripe, account, body.return_url if body else None)


@router.get(
    "/portal",
    status_code=303,
    response_class=RedirectResponse,
    responses={303: {"description": "To a fresh Billing Portal session, or to the hosted account page"}},
)
async def open_portal(request: Request, context: ContextDep, db: SessionDep) -> RedirectResponse:
    """Where `management_url` leads when opened: the signed-in person's own Billing Portal.

    A browser opening the link sends no Authorization header; it goes to the hosted account page, which
    signs the person in and offers the same portal. An app that opens it with its access token (or a
    backend that follows it for a person) lands straight in a fresh portal session.
    """
    try:
        claims = await get_signed_in(request, context, db)
    except Unauthorized:
        return RedirectResponse(f"{context.settings.public_url}{ACCOUNT_PAGE}", status_code=303)
    account = await load_account(db, claims.account_id)
    session = await billing_stripe.portal(db, stripe_provider(context.providers), account, None)
    return RedirectResponse(session["url"], status_code=303)


@router.post("/subscription/preview-change")
async def preview_change(
    body: PreviewChangeBody, account: CurrentAccount, stripe: StripeDep, db: SessionDep
) -> dict[str, Any]:
    return await billing_stripe.preview_change(db, stripe, account, body.product, body.subscription_id)


@router.post("/subscription/change")
async def change(
    body: ChangeBody, account: CurrentAccount, stripe: StripeDep, db: SessionDep
) -> dict[str, Any]:
    return await billing_stripe.change_plan(
        db, stripe, account, body.product, body.proration_date, body.subscription_id
    )


@router.post("/subscription/cancel")
async def cancel(
    account: CurrentAccount, stripe: StripeDep, db: SessionDep, body: SubscriptionBody | None = None
) -> dict[str, Any]:
    return await billing_stripe.set_cancel_at_period_end(
        db, stripe, account, cancel=True, subscription_id=body.subscription_id if body else None
    )


@router.post("/subscription/resume")
async def resume(
    account: CurrentAccount, stripe: StripeDep, db: SessionDep, body: SubscriptionBody | None = None
) -> dict[str, Any]:
    return await billing_stripe.set_cancel_at_period_end(
        db, stripe, account, cancel=False, subscription_id=body.subscription_id if body else None
    )
