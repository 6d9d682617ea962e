"""The hosted pages a person pays and manages their account on.

Every page works without JavaScript (forms post, the server redirects); the only script is on the
checkout success page, which listens on the entitlements stream so the page changes the moment the
purchase lands. Actions call the same services as the API, scoped to the signed-in account.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.client_input import ascii_int
from entitle.core.catalog import Catalog, Product
from entitle.core.models.accounts import Account
from entitle.core.subscriptions import Store
from entitle.db.types import utcnow
from entitle.errors import EntitleError, InvalidRequest, RateLimited
from entitle.providers.stripe.errors import StripeNotConfigured
from entitle.providers.stripe.provider import stripe_provider
from entitle.services.access import trials
from entitle.services.access.entitlements import read_entitlements
from entitle.services.billing import billing_stripe, invoices, trial_cards
from entitle.services.delivery import streams
from entitle.services.identity import accounts, credentials, page_links, tokens
from entitle.web.deps import SessionDep, client_ip
from entitle.web.pages import bought, guest, offers, plans
from entitle.web.pages.forms import checked, local_path, read_form
from entitle.web.pages.rendering import redirect, render
from entitle.web.pages.sentences import BILLING_UNAVAILABLE, PAYMENTS_OFF, customer_sentence
from entitle.web.pages.visits import PageVisit, Visit, start_page_session
from entitle.web.schemas import Credentials, EmailBody, LoginCredentials, ResetPasswordBody, TokenBody

router = APIRouter(include_in_schema=False)

# Sentences a redirect may ask a page to show (by key, so no one can put words on our pages).
NOTICES = {
    "signed_out": "You are signed out.",
    "canceled": "Your subscription will not renew. You keep access until the end of the period.",
    "resumed": "Your subscription will renew again.",
    "plan_changed": "Your plan has changed.",
    "password_reset": "Your password has been changed and you are signed in.",
    "verification_sent": "We sent you a new link to confirm your address.",
    "checkout_canceled": "Checkout was canceled; nothing was charged.",
    "already_verified": "Your address is already confirmed.",
    "invalid_page_link": "That link from the app is not valid. Sign in to continue.",
    "page_link_used": "That link from the app was already used. Sign in, or open it again from the app.",
    "page_link_expired": "That link from the app has expired. Sign in, or open it again from the app.",
    "billing_unavailable": "Billing could not be opened just now; try Manage billing below.",
    "card_added": "Your card is saved: your plan continues when the trial ends.",
    guest.CLAIMED_NOTICE: "Your purchase is in your account. It works on the web and in the iPhone app.",
}


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


def _with_notice(path: str, notice: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}notice={notice}"


def _sign_in_url(next_path: str, product: str | None = None) -> str:
    query = {"next": next_path} | ({"product": product} if product else {})
    return "/account/sign-in?" + urlencode(query)


async def _answer(db: AsyncSession, account: Account | None) -> dict[str, Any]:
    if account is None:
        return {"entitlements": {}, "subscriptions": []}
    return await read_entitlements(db, account.id)


# --- pricing -----------------------------------------------------------------------------------------------
@router.get("/pricing")
async def pricing(request: Request, visit: Visit, db: SessionDep) -> Response:
    return await _pricing_page(request, visit, db)


async def _pricing_page(
    request: Request,
    visit: Visit,
    db: AsyncSession,
    *,
    error: str | None = None,
    status: int = 200,
    chosen: str | None = None,
    promo: str | None = None,
) -> Response:
    catalog = visit.context.catalog
    answer = await _answer(db, visit.account)
    typed = promo if promo is not None else request.query_params.get("promo")
    selling = _payments_on(visit)
    promo_view = await offers.promo_view(
        visit, db, stripe_provider(visit.context.providers) if selling else None, typed, ip=client_ip(request)
    )
    return render(
        visit,
        "pricing.html",
        status=status,
        notice=_notice(request),
        error=error,
        plans=plans.with_subscriptions(
            plans.with_purchases(
                plans.plans(
                    catalog,
                    plans.paying_products(answer),
                    await trials.entitlements_trialed(db, visit.account.id) if visit.account else frozenset(),
                ),
                catalog,
                answer,
            ),
            catalog,
            answer,
        ),
        app_store_products=plans.paying_products(answer, Store.APP_STORE),
        web_products=plans.paying_products(answer, Store.STRIPE),
        chosen=chosen or request.query_params.get("product"),
        payments_off=None if selling else _payments_off(catalog),
        plus_tax=visit.context.settings.stripe_automatic_tax,
        promo=promo_view,
    )


def _payments_off(catalog: Catalog) -> str:
    """What /pricing says when the web cannot sell: and where one can buy instead, if anywhere."""
    if any(product.app_store_product_id for product in catalog.products.values()):
        return f"{PAYMENTS_OFF} You can subscribe in the iPhone app."
    return PAYMENTS_OFF


def _payments_on(visit: PageVisit) -> bool:
    """Whether Stripe is configured, so the web can sell (the pages offer nothing they cannot sell)."""
    try:
        stripe_provider(visit.context.providers)
    except StripeNotConfigured:
        return False
    return True


@router.post("/pricing/subscribe")
async def subscribe(request: Request, visit: Visit, db: SessionDep) -> Response:
    return await _checkout_from_pricing(request, visit, db, one_time=False)


@router.post("/pricing/buy")
async def buy(request: Request, visit: Visit, db: SessionDep) -> Response:
    """A one-time product (with the quantity picked for a pack): straight to payment-mode Checkout."""
    return await _checkout_from_pricing(request, visit, db, one_time=True)


async def _checkout_from_pricing(
    request: Request, visit: PageVisit, db: AsyncSession, *, one_time: bool
) -> Response:
    """A /pricing button: sign in first if needed, then Checkout; a refusal re-renders the page with it."""
    fields = await read_form(request, visit)
    product = fields.get("product", "")
    code = fields.get("promotion_code", "").strip()[: offers.MAX_CODE_LENGTH] or None
    if not _payments_on(visit):
        # Nothing to sign in for: the page offers no button, and a crafted post learns no more.
        return await _pricing_page(request, visit, db, error=PAYMENTS_OFF, status=503)
    if visit.account is None and not guest.guest_checkout_on(visit):
        # The code rides in the page to come back to, which the sign-in carries whichever way it goes.
        back = "/pricing" + (f"?{urlencode({'promo': code})}" if code else "")
        return redirect(visit, _sign_in_url(back, product))
    try:
        quantity = None
        if one_time:
            quantity = ascii_int(fields.get("quantity") or "1")
            if quantity is None:
                raise InvalidRequest("Choose how many to buy.", code="invalid_quantity")
        if visit.account is None:
            # Pay first, the account after: the success page (or the mailed link) makes the account.
            return await guest.to_guest_checkout(visit, db, request, product, quantity, code)
        return await _to_checkout(visit, db, visit.account, product, quantity, code)
    except EntitleError as exc:
        error = customer_sentence(exc, unavailable=PAYMENTS_OFF)
        return await _pricing_page(request, visit, db, error=error, status=exc.status_code, promo=code)


async def _to_checkout(
    visit: PageVisit,
    db: AsyncSession,
    account: Account,
    product: str,
    quantity: int | None = None,
    promotion_code: str | None = None,
) -> Response:
    """Straight to Stripe Checkout, which shows Apple Pay and Google Pay on capable phones.

    The service refuses a second payment for a plan the person already has (App Store included)."""
    if product not in visit.context.catalog.products:
        raise InvalidRequest("Choose one of the plans on this page.", code="unknown_product")
    public = visit.context.settings.public_url.rstrip("/")
    session = await billing_stripe.start_checkout(
        db,
        stripe_provider(visit.context.providers),
        account,
        product,
        # The product rides along so the success page waits for this purchase, not for any plan the
        # person already had (an add-on bought beside a plan would otherwise "land" at once).
        success_url=f"{public}/checkout/success?{urlencode({'product': product})}"
        "&session_id={CHECKOUT_SESSION_ID}",
        cancel_url=f"{public}/pricing?notice=checkout_canceled",
        quantity=quantity,
        promotion_code=promotion_code,
    )
    return redirect(visit, session["url"])


@router.get("/checkout/success")
async def checkout_success(request: Request, visit: Visit, db: SessionDep) -> Response:
    if (paid_as_guest := await guest.browser_checkout(request, visit, db)) is not None:
        return await guest.success_page(request, visit, db, paid_as_guest)
    if visit.account is None:
        # Paid from an app that signed the person in with the API, not on these pages: nothing to
        # watch from here, but the payment went through at Stripe.
        return render(visit, "checkout_success.html", landed=None, signed_in=False)
    answer = await _answer(db, visit.account)
    cards = plans.subscription_cards(visit.context.catalog, answer)
    bought = visit.context.catalog.product(request.query_params.get("product", ""))
    if bought is not None and bought.is_one_time:
        return await _one_time_success(request, visit, db, visit.account, answer, bought)
    landed = [
        card
        for card in cards
        if card.store is Store.STRIPE and card.entitles and (bought is None or card.product == bought.key)
    ]
    return render(
        visit,
        "checkout_success.html",
        landed=landed[0] if landed else None,
        signed_in=True,
        awaited=" ".join(bought.entitlements) if bought else "",
        awaited_name=bought.name if bought else None,
    )


async def _one_time_success(
    request: Request,
    visit: PageVisit,
    db: AsyncSession,
    account: Account,
    answer: dict[str, Any],
    bought: Product,
) -> Response:
    """A one-time purchase has landed once its PaymentIntent is among the account's purchases; the page
    waits for exactly that one (a second pack of credits must not look done because of the first)."""
    intent_id = ""
    session_id = request.query_params.get("session_id", "")
    if session_id and _payments_on(visit):
        try:
            session = await billing_stripe.own_checkout_session(
                db, stripe_provider(visit.context.providers), account, session_id
            )
            intent_id = str(session.get("payment_intent") or "")
        except EntitleError:
            intent_id = ""  # not this person's session, or Stripe is away: wait for nothing specific
    landed = bool(intent_id) and any(p.get("id") == intent_id for p in answer.get("purchases", []))
    return render(
        visit,
        "checkout_success.html",
        landed=None,
        one_time_landed=landed,
        purchase=intent_id,
        signed_in=True,
        awaited="",
        awaited_name=bought.name,
    )


@router.post("/account/stream-ticket")
async def stream_ticket(request: Request, visit: Visit, db: SessionDep) -> Response:
    """A ticket for the page's EventSource (which cannot send headers); the CSRF token rides in a header."""
    visit.check_csrf(request.headers.get("x-csrf-token"))
    if visit.account is None:
        return JSONResponse({"error": {"code": "signed_out", "message": "Sign in again."}}, status_code=401)
    ticket = await streams.issue_ticket(db, visit.account.id, visit.session_id)
    return JSONResponse({"ticket": ticket}, headers={"Cache-Control": "no-store"})


# --- signing in --------------------------------------------------------------------------------------------
@router.get("/account/sign-in")
async def sign_in_page(request: Request, visit: Visit) -> Response:
    next_path = local_path(request.query_params.get("next"), "/account")
    if visit.account is not None:
        return redirect(visit, next_path)
    return sign_in_form(request, visit, next_path=next_path)


def sign_in_form(
    request: Request,
    visit: PageVisit,
    *,
    next_path: str,
    error: str | None = None,
    form: str | None = None,
    email: str = "",
    status: int = 200,
    product: str | None = None,
) -> Response:
    settings = visit.context.settings
    product = product if product is not None else request.query_params.get("product") or ""
    query = urlencode({"next": next_path} | ({"product": product} if product else {}))
    return render(
        visit,
        "sign_in.html",
        status=status,
        notice=_notice(request),
        error=error,
        failed_form=form,
        email=email,
        next_path=next_path,
        product=product if product in visit.context.catalog.products else "",
        apple_url=f"/account/sign-in/apple?{query}" if settings.apple_signin_web_client_id else None,
        google_url=f"/account/sign-in/google?{query}" if settings.google_web_client_id else None,
    )


async def after_sign_in(
    request: Request, visit: PageVisit, db: AsyncSession, account: Account, fields: dict[str, str]
) -> Response:
    await start_page_session(db, visit, account, request)
    product = fields.get("product")
    if product and product in visit.context.catalog.products:
        # They chose a plan before signing in: carry on to pay for it, without another click (with the
        # code they came with, which rides in the page they were on).
        code = _promo_in(fields.get("next"))
        try:
            return await _to_checkout(visit, db, account, product, promotion_code=code)
        except EntitleError as exc:
            # Signed in, but this plan cannot be bought now (already paid for, payments off): say why
            # on the pricing page, with the plan they chose marked.
            error = customer_sentence(exc, unavailable=PAYMENTS_OFF)
            return await _pricing_page(
                request, visit, db, error=error, status=exc.status_code, chosen=product, promo=code
            )
    return redirect(visit, local_path(fields.get("next"), "/account"))


def _promo_in(next_path: str | None) -> str | None:
    """The promotion code in the /pricing address a sign-in returns to, if any."""
    if not next_path:
        return None
    codes = parse_qs(urlsplit(next_path).query).get("promo") or [""]
    return codes[0].strip()[: offers.MAX_CODE_LENGTH] or None


async def _attempt(
    request: Request,
    visit: PageVisit,
    db: AsyncSession,
    form: str,
    fields: dict[str, str],
    action: Callable[[], Awaitable[Account]],
) -> Response:
    try:
        account = await action()
    except EntitleError as exc:
        await db.rollback()
        return sign_in_form(
            request,
            visit,
            next_path=local_path(fields.get("next"), "/account"),
            error=customer_sentence(exc),
            form=form,
            email=fields.get("email", "")[:320],
            status=exc.status_code,
        )
    return await after_sign_in(request, visit, db, account, fields)


@router.post("/account/sign-in")
async def sign_in(request: Request, visit: Visit, db: SessionDep) -> Response:
    fields = await read_form(request, visit)

    async def action() -> Account:
        body = checked(LoginCredentials, fields)
        await visit.context.rate_limiter.hit("login", ip=client_ip(request), address=body.email)
        return await accounts.authenticate_password(db, email=body.email, password=body.password)

    return await _attempt(request, visit, db, "sign_in", fields, action)


@router.post("/account/sign-up")
async def sign_up(request: Request, visit: Visit, db: SessionDep) -> Response:
    fields = await read_form(request, visit)

    async def action() -> Account:
        body = checked(Credentials, fields)
        limiter = visit.context.rate_limiter
        await limiter.hit("register", ip=client_ip(request), address=body.email, mail=True)
        return await accounts.register_with_password(db, email=body.email, password=body.password)

    return await _attempt(request, visit, db, "sign_up", fields, action)


@router.post("/account/sign-out")
async def sign_out(request: Request, visit: Visit, db: SessionDep) -> Response:
    await read_form(request, visit)
    if visit.session_id is not None:
        await tokens.revoke_family(db, visit.session_id, reason="logout")
    visit.sign_out()
    return redirect(visit, "/account/sign-in?notice=signed_out")


@router.get("/account/forgot-password")
async def forgot_page(visit: Visit) -> Response:
    return render(visit, "forgot_password.html", sent=False, error=None)


@router.post("/account/forgot-password")
async def forgot(request: Request, visit: Visit, db: SessionDep) -> Response:
    fields = await read_form(request, visit)
    try:
        body = checked(EmailBody, fields)
        await visit.context.rate_limiter.hit("forgot", ip=client_ip(request), address=body.email, mail=True)
        await credentials.request_password_reset(db, body.email)
    except (InvalidRequest, RateLimited) as exc:
        return render(visit, "forgot_password.html", status=exc.status_code, sent=False, error=exc.message)
    # The same answer whether or not the address has an account.
    return render(visit, "forgot_password.html", sent=True, error=None)


@router.get("/account/reset-password")
async def reset_page(request: Request, visit: Visit) -> Response:
    token = request.query_params.get("token", "")[:200]
    return render(visit, "reset_password.html", token=token, error=None)


@router.post("/account/reset-password")
async def reset(request: Request, visit: Visit, db: SessionDep) -> Response:
    fields = await read_form(request, visit)
    try:
        body = checked(ResetPasswordBody, fields)
        await visit.context.rate_limiter.hit("reset", ip=client_ip(request))
        account = await credentials.reset_password(db, body.token, body.password)
    except EntitleError as exc:
        await db.rollback()
        return render(
            visit,
            "reset_password.html",
            status=exc.status_code,
            token=fields.get("token", "")[:200],
            error=customer_sentence(exc),
        )
    await start_page_session(db, visit, account, request)
    return redirect(visit, "/account?notice=password_reset")


@router.get("/account/verify-email")
async def verify_page(request: Request, visit: Visit) -> Response:
    # A GET changes nothing: mail scanners open links before people do, and would use up the token.
    token = request.query_params.get("token", "")[:200]
    return render(visit, "verify_email.html", token=token, verified=False, error=None)


@router.post("/account/verify-email")
async def verify(request: Request, visit: Visit, db: SessionDep) -> Response:
    fields = await read_form(request, visit)
    try:
        body = checked(TokenBody, fields)
        await visit.context.rate_limiter.hit("verify", ip=client_ip(request))
        await credentials.verify_email(db, body.token)
    except EntitleError as exc:
        return render(
            visit,
            "verify_email.html",
            status=exc.status_code,
            token="",
            verified=False,
            error=customer_sentence(exc),
        )
    return render(visit, "verify_email.html", token="", verified=True, error=None)


@router.post("/account/verify-email/resend")
async def resend_verification(request: Request, visit: Visit, db: SessionDep) -> Response:
    await read_form(request, visit)
    if visit.account is None:
        return redirect(visit, _sign_in_url("/account"))
    try:
        await visit.context.rate_limiter.hit(
            "verification", ip=client_ip(request), address=visit.account.email, mail=True
        )
        sent = await credentials.resend_verification(db, visit.account)
    except EntitleError as exc:
        return await _account_page(request, visit, db, error=customer_sentence(exc), status=exc.status_code)
    return redirect(visit, "/account?notice=" + ("verification_sent" if sent else "already_verified"))


# --- page links from the apps ------------------------------------------------------------------------------
@router.get(page_links.OPEN_PATH)
async def open_page_link(request: Request, visit: Visit) -> Response:
    """Where a link from `POST /v1/me/page-link` lands: spent for a page session, then on to the clean page.

    A GET that writes, in a transaction of its own: the app opens the link in a browser, which can only
    GET, and the link is never mailed, so no scanner spends it first. The new session replaces whatever
    session the browser had, so the page never shows one person's account to another.
    """
    database = visit.context.database
    try:
        async with database.transaction() as db:
            link = await page_links.spend(db, request.query_params.get("token", ""))
            account = await accounts.get_account(db, link.account_id)
            if account is None or account.is_deleted:
                raise page_links.PageLinkRefused("This link is not valid.")
            if visit.session_id is not None:
                await tokens.revoke_family(db, visit.session_id, reason="replaced_by_page_link")
            await start_page_session(db, visit, account, request)
    except page_links.PageLinkRefused as exc:
        return await _refused_page_link(visit, exc)
    if link.page == "billing":
        return await _to_billing_portal(visit, account)
    return redirect(visit, page_links.page_path(link.page))


async def _refused_page_link(visit: PageVisit, refused: page_links.PageLinkRefused) -> Response:
    destination = page_links.page_path(refused.page or "account")
    if visit.account is not None and visit.account.id == refused.account_id:
        # Opened again in the browser it already signed in (the app opened it twice): nothing to spend.
        return redirect(visit, destination)
    if refused.account_id is not None:
        # A real link of another account: whoever this browser is signed in as, it is not the person the
        # app meant, so the sign-in page, signed out. A link nobody issued proves nothing about anyone
        # (any site could send a visitor one), so it leaves the browser's session alone.
        if visit.session_id is not None:
            async with visit.context.database.transaction() as db:
                await tokens.revoke_family(db, visit.session_id, reason="replaced_by_page_link")
        visit.sign_out()
    return redirect(visit, "/account/sign-in?" + urlencode({"next": destination, "notice": refused.code}))


async def _to_billing_portal(visit: PageVisit, account: Account) -> Response:
    public = visit.context.settings.public_url.rstrip("/")
    try:
        async with visit.context.database.transaction() as db:
            stripe = stripe_provider(visit.context.providers)
            session = await billing_stripe.portal(db, stripe, account, f"{public}/account")
    except EntitleError:
        # Signed in by now; the account page offers the same button and says why if it fails again.
        return redirect(visit, "/account?notice=billing_unavailable")
    return redirect(visit, session["url"])


# --- the account -------------------------------------------------------------------------------------------
@router.get("/account")
async def account_page(request: Request, visit: Visit, db: SessionDep) -> Response:
    if visit.account is None:
        return redirect(visit, _sign_in_url("/account"))
    return await _account_page(request, visit, db)


async def _account_page(
    request: Request, visit: PageVisit, db: AsyncSession, *, error: str | None = None, status: int = 200
) -> Response:
    assert visit.account is not None
    answer = await _answer(db, visit.account)
    catalog = visit.context.catalog
    cards = plans.subscription_cards(catalog, answer)
    # Each Stripe subscription changes within its own plan (Pro monthly to yearly, never Pro to Storage).
    switch_options = {
        card.id: plans.switch_options(catalog, card.product) for card in cards if card.store is Store.STRIPE
    }
    purchases = bought.purchase_lines(catalog, answer, utcnow())
    return render(
        visit,
        "account.html",
        status=status,
        notice=_notice(request),
        error=error,
        cards=cards,
        gifts=plans.gifts(answer),
        entitlements=catalog.entitlements,
        switch_options=switch_options,
        purchases=purchases,
        balances=bought.balance_lines(catalog, answer),
        redundant=bought.redundant_subscriptions(catalog, cards, purchases),
        email_verified=await _email_verified(db, visit.account),
        invoices=await _invoices(request, visit, db),
    )


# Invoices shown on /account at a time; "Older invoices" pages on.
ACCOUNT_INVOICES = 10


async def _invoices(request: Request, visit: PageVisit, db: AsyncSession) -> dict[str, Any] | None:
    """A page of the account's invoices from Stripe, or None when Stripe cannot be asked right now (the
    rest of the page still shows: an invoice list is never worth an error page)."""
    assert visit.account is not None
    after = request.query_params.get("invoices_after")
    try:
        return await invoices.list_invoices(
            db,
            lambda: stripe_provider(visit.context.providers),
            visit.account,
            limit=ACCOUNT_INVOICES,
            after=after if after and invoices.INVOICE_ID.match(after) else None,
        )
    except EntitleError:
        return None


async def _email_verified(db: AsyncSession, account: Account) -> bool:
    identity = await credentials.password_identity(db, account.id)
    return identity is None or identity.email_verified


async def _roll_back(db: AsyncSession, visit: PageVisit) -> None:
    """Undo a failed action's writes; the signed-in account is read again, as a rollback expires it
    and the account page that says what failed reads it."""
    await db.rollback()
    if visit.account is not None:
        await db.refresh(visit.account)


async def _stripe_action(
    request: Request,
    visit: PageVisit,
    db: AsyncSession,
    action: Callable[[Account, dict[str, str]], Awaitable[Response]],
) -> Response:
    fields = await read_form(request, visit)
    if visit.account is None:
        return redirect(visit, _sign_in_url("/account"))
    try:
        return await action(visit.account, fields)
    except EntitleError as exc:
        await _roll_back(db, visit)
        error = customer_sentence(exc, unavailable=BILLING_UNAVAILABLE)
        return await _account_page(request, visit, db, error=error, status=exc.status_code)


@router.post("/account/billing")
async def manage_billing(request: Request, visit: Visit, db: SessionDep) -> Response:
    async def action(account: Account, fields: dict[str, str]) -> Response:
        public = visit.context.settings.public_url.rstrip("/")
        session = await billing_stripe.portal(
            db, stripe_provider(visit.context.providers), account, f"{public}/account"
        )
        return redirect(visit, session["url"])

    return await _stripe_action(request, visit, db, action)


@router.get(trial_cards.ADD_CARD_PATH)
async def add_card(request: Request, visit: Visit, db: SessionDep) -> Response:
    """The link in the trial-ending mail and the account page's button: sign in, then Stripe's page for
    adding a card. A GET because a mail can only link; it opens nothing but the signed-in person's own
    Stripe page."""
    if visit.account is None:
        return redirect(visit, _sign_in_url(trial_cards.ADD_CARD_PATH))
    try:
        url = await trial_cards.add_card_url(db, stripe_provider(visit.context.providers), visit.account)
    except EntitleError as exc:
        await _roll_back(db, visit)
        error = customer_sentence(exc, unavailable=BILLING_UNAVAILABLE)
        return await _account_page(request, visit, db, error=error, status=exc.status_code)
    return redirect(visit, url)


@router.get(trial_cards.ADDED_PATH)
async def card_added(request: Request, visit: Visit, db: SessionDep) -> Response:
    """Where Stripe sends the person back once the card is added. A GET that writes (Stripe redirects
    here), in a transaction of its own: a GET's session only reads."""
    if visit.account is None:
        return redirect(visit, _sign_in_url("/account"))
    try:
        async with visit.context.database.transaction() as tx:
            account = await accounts.get_account(tx, visit.account.id)
            if account is not None:
                await trial_cards.adopt_customer_card(tx, stripe_provider(visit.context.providers), account)
    except EntitleError as exc:
        error = customer_sentence(exc, unavailable=BILLING_UNAVAILABLE)
        return await _account_page(request, visit, db, error=error, status=exc.status_code)
    return redirect(visit, "/account?notice=card_added")


@router.post("/account/subscription/cancel")
async def cancel(request: Request, visit: Visit, db: SessionDep) -> Response:
    return await _set_renewal(request, visit, db, cancel=True)


@router.post("/account/subscription/resume")
async def resume(request: Request, visit: Visit, db: SessionDep) -> Response:
    return await _set_renewal(request, visit, db, cancel=False)


async def _set_renewal(request: Request, visit: PageVisit, db: AsyncSession, *, cancel: bool) -> Response:
    async def action(account: Account, fields: dict[str, str]) -> Response:
        stripe = stripe_provider(visit.context.providers)
        await billing_stripe.set_cancel_at_period_end(
            db, stripe, account, cancel=cancel, subscription_id=fields.get("subscription_id") or None
        )
        return redirect(visit, "/account?notice=" + ("canceled" if cancel else "resumed"))

    return await _stripe_action(request, visit, db, action)


@router.get("/account/change-plan")
async def change_plan_page(request: Request, visit: Visit, db: SessionDep) -> Response:
    """The proration preview: what changing now charges or credits, before anything changes."""
    if visit.account is None:
        return redirect(visit, _sign_in_url("/account"))
    product_key = request.query_params.get("product", "")
    product = visit.context.catalog.products.get(product_key)
    subscription_id = request.query_params.get("subscription_id") or None
    try:
        if product is None:
            raise InvalidRequest("Choose one of the plans on the account page.", code="unknown_product")
        stripe = stripe_provider(visit.context.providers)
        preview = await billing_stripe.preview_change(db, stripe, visit.account, product_key, subscription_id)
    except EntitleError as exc:
        error = customer_sentence(exc, unavailable=BILLING_UNAVAILABLE)
        return await _account_page(request, visit, db, error=error, status=exc.status_code)
    return render(visit, "change_plan.html", product=product, preview=preview)


@router.post("/account/change-plan")
async def change_plan(request: Request, visit: Visit, db: SessionDep) -> Response:
    fields = await read_form(request, visit)
    if visit.account is None:
        return redirect(visit, _sign_in_url("/account"))
    account = visit.account
    try:
        raw_date = fields.get("proration_date", "")
        proration_date = ascii_int(raw_date) if len(raw_date) < 12 else None
        stripe = stripe_provider(visit.context.providers)
        await billing_stripe.change_plan(
            db,
            stripe,
            account,
            fields.get("product", ""),
            proration_date,
            fields.get("subscription_id") or None,
        )
    except EntitleError as exc:
        await _roll_back(db, visit)
        error = customer_sentence(exc, unavailable=BILLING_UNAVAILABLE)
        return await _account_page(request, visit, db, error=error, status=exc.status_code)
    return redirect(visit, "/account?notice=plan_changed")


@router.get("/account/delete")
async def delete_page(visit: Visit) -> Response:
    if visit.account is None:
        return redirect(visit, _sign_in_url("/account/delete"))
    return render(visit, "delete_account.html", error=None, deleted=False)


@router.post("/account/delete")
async def delete(request: Request, visit: Visit, db: SessionDep) -> Response:
    fields = await read_form(request, visit)
    if visit.account is None:
        return redirect(visit, _sign_in_url("/account/delete"))
    if fields.get("confirm") != "delete":
        return render(
            visit,
            "delete_account.html",
            status=422,
            error="Type “delete” to confirm.",
            deleted=False,
        )
    try:
        await accounts.delete_account(db, visit.account, hooks=visit.context.account_deletion_hooks)
    except EntitleError as exc:
        await db.rollback()
        error = customer_sentence(exc)
        return render(visit, "delete_account.html", status=exc.status_code, error=error, deleted=False)
    visit.sign_out()
    return render(visit, "delete_account.html", error=None, deleted=True)
