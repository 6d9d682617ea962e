"""Pay first, the account after, on the hosted pages: Checkout for visitors, the claim on the success page,
and the mailed redemption link (`/redeem?token=`).

Every state has its page: waiting for Stripe, paid (create an account with the Checkout address prefilled,
or sign in; Apple and Google too), an account already has that address (sign in), already claimed,
already paid for elsewhere (409: nothing moved), and a link that is used, expired or unknown. A GET never
spends a link (mail scanners open links before people do); the paying browser's own success page does
claim on GET once it is signed in, as only that browser holds the cookie bound to the session.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import Account
from entitle.core.models.guest import GuestCheckout, GuestCheckoutStatus
from entitle.errors import Conflict, EntitleError, InvalidRequest
from entitle.providers.stripe.provider import stripe_provider
from entitle.services.billing import guest_checkout
from entitle.services.identity import accounts
from entitle.web.deps import SessionDep, client_ip
from entitle.web.guest_cookie import browser_secret, remember_browser
from entitle.web.pages.forms import checked, read_form
from entitle.web.pages.rendering import redirect, render
from entitle.web.pages.sentences import PAYMENTS_OFF, customer_sentence
from entitle.web.pages.visits import PageVisit, Visit, start_page_session
from entitle.web.schemas import Credentials, LoginCredentials

router = APIRouter(include_in_schema=False)

CLAIMED_NOTICE = "claimed"


def guest_checkout_on(visit: PageVisit) -> bool:
    return visit.context.settings.guest_checkout


# --- Checkout for a visitor ---------------------------------------------------------------------------------
async def to_guest_checkout(
    visit: PageVisit,
    db: AsyncSession,
    request: Request,
    product: str,
    quantity: int | None,
    promotion_code: str | None = None,
) -> Response:
    """Straight from /pricing to Stripe Checkout, no account: Stripe asks for the email (and the wallet)."""
    if product not in visit.context.catalog.products:
        raise InvalidRequest("Choose one of the plans on this page.", code="unknown_product")
    # Anyone may open one: limited per client IP like sign-in, so a script cannot fill Stripe with them.
    await visit.context.rate_limiter.hit("guest_checkout", ip=client_ip(request))
    public = visit.context.settings.public_url.rstrip("/")
    secret = browser_secret(request, visit.context) or guest_checkout.new_browser_secret()
    session = await guest_checkout.start_guest_checkout(
        db,
        stripe_provider(visit.context.providers),
        product,
        browser_secret=secret,
        success_url=f"{public}/checkout/success?{urlencode({'product': product})}"
        "&session_id={CHECKOUT_SESSION_ID}",
        cancel_url=f"{public}/pricing?notice=checkout_canceled",
        quantity=quantity,
        promotion_code=promotion_code,
    )
    response = redirect(visit, session["url"])
    remember_browser(response, visit.context, secret)
    return response


async def browser_checkout(request: Request, visit: PageVisit, db: AsyncSession) -> GuestCheckout | None:
    """The guest checkout of /checkout/success's `session_id`, if this browser opened it."""
    if not guest_checkout_on(visit):
        return None
    return await guest_checkout.checkout_of_browser(
        db, request.query_params.get("session_id", ""), browser_secret(request, visit.context)
    )


# --- the success page ---------------------------------------------------------------------------------------
async def success_page(request: Request, visit: PageVisit, db: AsyncSession, row: GuestCheckout) -> Response:
    """The paying browser back from Stripe: claim at once when signed in, else offer to (sign up or in).

    A GET that writes, each step in a transaction of its own (a GET's session has none): recording the
    payment must stand even when the claim after it is refused."""
    stripe = stripe_provider(visit.context.providers)
    database = visit.context.database
    try:
        async with database.transaction() as tx:
            row = await guest_checkout.refresh_from_stripe(tx, stripe, await _reloaded(tx, row))
    except EntitleError as exc:
        # Stripe is away: the webhook records it meanwhile and the mailed link still arrives.
        return _page(visit, "waiting", row, error=customer_sentence(exc, unavailable=PAYMENTS_OFF))
    if row.status == GuestCheckoutStatus.CLAIMED.value:
        if visit.account is not None and row.claimed_account_id == visit.account.id:
            return redirect(visit, f"/account?notice={CLAIMED_NOTICE}")
        return _page(visit, "claimed", row)
    if row.status != GuestCheckoutStatus.PAID.value:
        return _page(visit, "waiting", row)
    if visit.account is not None:
        try:
            async with database.transaction() as tx:
                account = await tx.get(Account, visit.account.id)
                assert account is not None
                await guest_checkout.claim(tx, stripe, await _reloaded(tx, row), account, via="browser")
        except EntitleError as exc:
            return _refused(visit, row, exc)
        return redirect(visit, f"/account?notice={CLAIMED_NOTICE}")
    return await _offer(visit, db, row, next_path=_success_path(row))


def _refused(visit: PageVisit, row: GuestCheckout, exc: EntitleError) -> Response:
    """A claim that did not happen: refused before anything moved (409), or Stripe away (rolled back)."""
    if isinstance(exc, Conflict):
        state = "claimed" if exc.code == "already_claimed" else "refused"
        return _page(visit, state, row, error=customer_sentence(exc), status=409)
    return _page(visit, "waiting", None, error=customer_sentence(exc, unavailable=PAYMENTS_OFF), status=503)


async def _reloaded(db: AsyncSession, row: GuestCheckout) -> GuestCheckout:
    fresh = await db.get(GuestCheckout, row.id, populate_existing=True)
    assert fresh is not None
    return fresh


def _success_path(row: GuestCheckout) -> str:
    return "/checkout/success?" + urlencode({"product": row.product, "session_id": row.checkout_id})


async def _offer(
    visit: PageVisit,
    db: AsyncSession,
    row: GuestCheckout,
    *,
    next_path: str,
    token: str = "",
    error: str | None = None,
    failed_form: str | None = None,
    status: int = 200,
) -> Response:
    """Paid and waiting: create an account (the Checkout address prefilled) or, when an account already
    has that address, sign in to it."""
    existing = await guest_checkout.account_with_email(db, row.email)
    settings = visit.context.settings
    query = urlencode({"next": next_path})
    return _page(
        visit,
        "existing" if existing is not None else "create",
        row,
        next_path=next_path,
        token=token,
        error=error,
        failed_form=failed_form,
        status=status,
        apple_url=f"/account/sign-in/apple?{query}" if settings.apple_signin_web_client_id else None,
        google_url=f"/account/sign-in/google?{query}" if settings.google_web_client_id else None,
    )


def _page(
    visit: PageVisit, state: str, row: GuestCheckout | None, *, status: int = 200, **values: Any
) -> Response:
    catalog = visit.context.catalog
    product = catalog.product(row.product) if row is not None else None
    values.setdefault("error", None)
    values.setdefault("token", "")
    return render(
        visit,
        "guest_claim.html",
        status=status,
        state=state,
        row=row,
        product_name=(product.name if product else row.product) if row is not None else "",
        **values,
    )


async def _claim_and_go(
    visit: PageVisit, db: AsyncSession, row: GuestCheckout, account: Account, *, via: str
) -> Response:
    stripe = stripe_provider(visit.context.providers)
    try:
        await guest_checkout.claim(db, stripe, row, account, via=via)
    except Conflict as exc:
        # Refused before anything moved (already paid for here, or claimed meanwhile): said signed in.
        return _refused(visit, row, exc)
    except EntitleError as exc:
        await db.rollback()
        return _refused(visit, row, exc)
    return redirect(visit, f"/account?notice={CLAIMED_NOTICE}")


async def _account_from_form(
    request: Request, visit: PageVisit, db: AsyncSession, fields: dict[str, str], row: GuestCheckout
) -> Account:
    """Sign in, or create the account (one password field; the address is the one typed into Checkout
    unless the person changed it), as the sign-in page does, with the same limits."""
    limiter = visit.context.rate_limiter
    if fields.get("action") == "sign_up":
        fields.setdefault("email", row.email or "")
        body = checked(Credentials, fields)
        await limiter.hit("register", ip=client_ip(request), address=body.email, mail=True)
        account = await accounts.register_with_password(db, email=body.email, password=body.password)
    else:
        login = checked(LoginCredentials, fields)
        await limiter.hit("login", ip=client_ip(request), address=login.email)
        account = await accounts.authenticate_password(db, email=login.email, password=login.password)
    await start_page_session(db, visit, account, request)
    return account


@router.post("/checkout/claim")
async def claim_in_browser(request: Request, visit: Visit, db: SessionDep) -> Response:
    """The success page's forms: create an account (or sign in) and take what this browser paid for."""
    fields = await read_form(request, visit)
    row = await guest_checkout.checkout_of_browser(
        db, fields.get("session_id", ""), browser_secret(request, visit.context)
    )
    if row is None or not guest_checkout_on(visit):
        # Another browser's session (or none): nothing to claim here; the mailed link works anywhere.
        return _page(visit, "not_this_browser", None, status=404)
    return await _sign_in_and_claim(
        request, visit, db, fields, row, via="browser", next_path=_success_path(row)
    )


async def _sign_in_and_claim(
    request: Request,
    visit: PageVisit,
    db: AsyncSession,
    fields: dict[str, str],
    row: GuestCheckout,
    *,
    via: str,
    next_path: str,
) -> Response:
    if visit.account is None:
        try:
            account = await _account_from_form(request, visit, db, fields, row)
        except EntitleError as exc:
            await db.rollback()
            await db.refresh(row)
            return await _offer(
                visit,
                db,
                row,
                next_path=next_path,
                token=fields.get("token", "")[:200],
                error=customer_sentence(exc),
                failed_form=fields.get("action", "sign_in"),
                status=exc.status_code,
            )
    else:
        account = visit.account
    return await _claim_and_go(visit, db, row, account, via=via)


# --- the mailed link -------------------------------------------------------------------------------------
@router.get(guest_checkout.REDEEM_PATH)
async def redeem_page(request: Request, visit: Visit, db: SessionDep) -> Response:
    """The mailed link: says what it can do; a GET spends nothing."""
    token = request.query_params.get("token", "")[:200]
    row = await guest_checkout.checkout_of_token(db, token)
    state = guest_checkout.link_state(row)
    if row is None or state != "valid":
        if (
            row is not None
            and state == "claimed"
            and visit.account
            and row.claimed_account_id == visit.account.id
        ):
            return redirect(visit, f"/account?notice={CLAIMED_NOTICE}")
        gone = state in ("claimed", "expired")
        return _page(visit, "link_" + state, row, token=token, status=410 if gone else 404)
    next_path = f"{guest_checkout.REDEEM_PATH}?{urlencode({'token': token})}"
    if visit.account is not None:
        return _page(visit, "confirm", row, token=token, account_email=visit.account.email)
    return await _offer(visit, db, row, next_path=next_path, token=token)


@router.post(guest_checkout.REDEEM_PATH)
async def redeem(request: Request, visit: Visit, db: SessionDep) -> Response:
    fields = await read_form(request, visit)
    token = fields.get("token", "")[:200]
    row = await guest_checkout.checkout_of_token(db, token)
    state = guest_checkout.link_state(row)
    if row is None or state != "valid":
        return _page(visit, "link_" + state, row, status=410 if state in ("claimed", "expired") else 404)
    next_path = f"{guest_checkout.REDEEM_PATH}?{urlencode({'token': token})}"
    return await _sign_in_and_claim(request, visit, db, fields, row, via="link", next_path=next_path)


@router.post(guest_checkout.REDEEM_PATH + "/resend")
async def resend(request: Request, visit: Visit, db: SessionDep) -> Response:
    """An expired link's page: a new link to the same address (rate-limited like every mail we send)."""
    fields = await read_form(request, visit)
    token = fields.get("token", "")[:200]
    row = await guest_checkout.checkout_of_token(db, token)
    state = guest_checkout.link_state(row)
    if row is None or state != "expired" or not row.email:
        return _page(visit, "link_" + state, row, status=410 if row else 404)
    try:
        await visit.context.rate_limiter.hit(
            "verification", ip=client_ip(request), address=row.email, mail=True
        )
    except EntitleError as exc:
        return _page(
            visit, "link_expired", row, token=token, error=customer_sentence(exc), status=exc.status_code
        )
    await guest_checkout.resend_link(db, stripe_provider(visit.context.providers), token)
    return _page(visit, "link_resent", row)
