"""Sign in with Apple and Google on the hosted pages: the providers' own redirect flows, no script.

`GET /account/sign-in/{apple,google}` sends the browser to the provider's authorization page with a
signed `state` and a nonce (web/pages/sign_in_state.py); the provider posts the identity token back
(`response_mode=form_post`) to `.../callback`. The token is checked by the same verifiers as
`/v1/auth/apple` and `/v1/auth/google`, with the nonce required and the audience the web client id;
Apple's authorization code is exchanged as the API does (`identities.sign_in_with_apple`); the linking
rules are the same; then a page session starts and the person carries on where they were going (to
Stripe Checkout when they had chosen a plan). The callbacks are the only page posts without our CSRF
token: the signed state, tied to the browser by a cookie, is their protection.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from entitle import untrusted_json
from entitle.context import AppContext
from entitle.core.models.accounts import Account
from entitle.errors import EntitleError, ProviderUnavailable
from entitle.identity import AppleIdentityVerifier, GoogleIdentityVerifier, InvalidIdentityToken
from entitle.services.identity import identities
from entitle.web.deps import SessionDep, client_ip
from entitle.web.pages import sign_in_state
from entitle.web.pages.customer import after_sign_in, sign_in_form
from entitle.web.pages.forms import local_path, read_form_without_csrf
from entitle.web.pages.rendering import redirect
from entitle.web.pages.sentences import customer_sentence
from entitle.web.pages.sign_in_state import InvalidSignInState, Provider, SignInState
from entitle.web.pages.visits import PageVisit, Visit
from entitle.web.routes.identity import AppleName

router = APIRouter(include_in_schema=False)

NAMES: dict[Provider, str] = {"apple": "Apple", "google": "Google"}
MAX_NEXT_LENGTH = 512
# What each provider posts back when the person closes its page instead of signing in.
CANCELED = {"user_cancelled_authorize", "access_denied"}


class SignInCanceled(EntitleError):
    status_code = 200  # the person chose to; the sign-in page is the right answer, not an error page
    default_code = "sign_in_canceled"


class WebSignInNotConfigured(ProviderUnavailable):
    default_code = "identity_provider_not_configured"


def _callback_url(context: AppContext, provider: Provider) -> str:
    return f"{context.settings.public_url.rstrip('/')}/account/sign-in/{provider}/callback"


def _apple_client_id(context: AppContext) -> str:
    settings = context.settings
    client_id = settings.apple_signin_web_client_id
    if not client_id or client_id not in settings.apple_signin_client_ids:
        raise WebSignInNotConfigured(
            "Sign in with Apple is not configured for the web: set ENTITLE_APPLE_SIGNIN_WEB_CLIENT_ID "
            "to the Services ID and add it to ENTITLE_APPLE_SIGNIN_CLIENT_IDS."
        )
    if context.accounts.apple_api is None:
        # Apple's web flow always hands over a code, and its refresh token must be kept for revocation.
        raise WebSignInNotConfigured(
            "Sign in with Apple on the web needs ENTITLE_APPLE_SIGNIN_TEAM_ID, ENTITLE_APPLE_SIGNIN_KEY_ID "
            "and ENTITLE_APPLE_SIGNIN_PRIVATE_KEY_PATH."
        )
    return client_id


def _google_client_id(context: AppContext) -> str:
    settings = context.settings
    client_id = settings.google_web_client_id
    if not client_id or client_id not in settings.google_client_ids:
        raise WebSignInNotConfigured(
            "Sign in with Google is not configured for the web: set ENTITLE_GOOGLE_WEB_CLIENT_ID and add "
            "it to ENTITLE_GOOGLE_CLIENT_IDS."
        )
    return client_id


def _authorize_url(context: AppContext, provider: Provider, state: SignInState, signed: str) -> str:
    settings = context.settings
    params: dict[str, str]
    if provider == "apple":
        base = settings.apple_signin_api_base.rstrip("/") + "/auth/authorize"
        params = {
            "client_id": _apple_client_id(context),
            "redirect_uri": _callback_url(context, provider),
            # The code is exchanged for the refresh token that account deletion must revoke.
            "response_type": "code id_token",
            # Apple posts the answer (and sends the name at all) only with form_post when scopes are asked.
            "response_mode": "form_post",
            "scope": "name email",
        }
    else:
        base = settings.google_auth_url
        params = {
            "client_id": _google_client_id(context),
            "redirect_uri": _callback_url(context, provider),
            "response_type": "id_token",
            "response_mode": "form_post",
            "scope": "openid email profile",
            # Let people with several Google accounts choose, instead of signing in the last one used.
            "prompt": "select_account",
        }
    params |= {"state": signed, "nonce": state.nonce}
    return f"{base}?{urlencode(params, quote_via=quote)}"


async def _start(request: Request, visit: PageVisit, provider: Provider) -> Response:
    next_path = local_path(request.query_params.get("next"), "/account")
    if len(next_path) > MAX_NEXT_LENGTH:
        next_path = "/account"
    product = request.query_params.get("product") or ""
    product = product if product in visit.context.catalog.products else ""
    try:
        state, signed, cookie = sign_in_state.start(
            visit.context, provider, next_path=next_path, product=product
        )
        url = _authorize_url(visit.context, provider, state, signed)
    except EntitleError as exc:
        return sign_in_form(
            request,
            visit,
            next_path=next_path,
            product=product,
            error=_sentence(exc, provider),
            form="provider",
            status=exc.status_code,
        )
    return sign_in_state.set_binding_cookie(redirect(visit, url), visit.context, cookie)


@router.get("/account/sign-in/apple")
async def start_apple(request: Request, visit: Visit) -> Response:
    return await _start(request, visit, "apple")


@router.get("/account/sign-in/google")
async def start_google(request: Request, visit: Visit) -> Response:
    return await _start(request, visit, "google")


def _apple_name(raw: str | None) -> str | None:
    """The name from Apple's `user` field (JSON, sent on the first authorization only)."""
    if not raw:
        return None
    try:
        user = untrusted_json.loads(raw)
        name = user.get("name") if isinstance(user, dict) else None
        if not isinstance(name, dict):
            return None
        return AppleName.model_validate(name).full() or None
    except (ValueError, ValidationError):
        return None  # a name is a nicety; never a reason to fail the sign-in


async def _apple_account(
    context: AppContext, db: AsyncSession, state: SignInState, fields: dict[str, str]
) -> Account:
    client_id = _apple_client_id(context)
    verifier: AppleIdentityVerifier = context.identity_verifiers["apple"]
    verified = await verifier.verify(fields.get("id_token", ""), nonce=state.nonce, nonce_required=True)
    if verified.audience != client_id:
        raise InvalidIdentityToken("The identity token was not issued to this site.")
    signed_in = await identities.sign_in_with_apple(
        db,
        context.accounts.apple_api,
        context.accounts.secret_box,
        verified,
        # Always present in this flow; required so a replayed answer meets Apple's single-use code.
        code=fields.get("code", ""),
        name=_apple_name(fields.get("user")),
    )
    return signed_in.account


async def _google_account(
    context: AppContext, db: AsyncSession, state: SignInState, fields: dict[str, str]
) -> Account:
    client_id = _google_client_id(context)
    verifier: GoogleIdentityVerifier = context.identity_verifiers["google"]
    verified = await verifier.verify(fields.get("id_token", ""), nonce=state.nonce)
    if verified.audience != client_id:
        raise InvalidIdentityToken("The identity token was not issued to this site.")
    signed_in = await identities.sign_in_with_identity(db, verified)
    return signed_in.account


def _sentence(exc: EntitleError, provider: Provider) -> str:
    """What the person reads; the codes' own messages are written for developers."""
    name = NAMES[provider]
    if isinstance(exc, InvalidIdentityToken) and exc.code == "invalid_identity_token":
        return f"{name} could not confirm who you are this time; please try again."
    if exc.code == "invalid_authorization_code":
        return "Apple's answer was already used or took too long; please sign in with Apple again."
    return customer_sentence(exc, unavailable=f"Sign in with {name} isn't available right now.")


async def _callback(request: Request, visit: PageVisit, db: AsyncSession, provider: Provider) -> Response:
    context = visit.context
    fields = await read_form_without_csrf(request)
    cookie = sign_in_state.binding_cookie(request, context)
    state: SignInState | None = None
    try:
        state = sign_in_state.read(context, fields.get("state"), provider)
        # Checked before anything else, and the cookie is cleared whatever happens: one use per browser.
        sign_in_state.check_browser(state, cookie)
        error = fields.get("error")
        if error:
            if error in CANCELED:
                raise SignInCanceled(f"Sign in with {NAMES[provider]} was canceled.")
            name = NAMES[provider]
            raise InvalidSignInState(f"{name} did not sign you in ({error[:60]}); please try again.")
        await context.rate_limiter.hit(provider, ip=client_ip(request))
        find = _apple_account if provider == "apple" else _google_account
        account = await find(context, db, state, fields)
        where = {"next": local_path(state.next_path, "/account"), "product": state.product}
        response = await after_sign_in(request, visit, db, account, where)
    except EntitleError as exc:
        await db.rollback()
        response = sign_in_form(
            request,
            visit,
            next_path=local_path(state.next_path if state else None, "/account"),
            product=state.product if state else "",
            error=_sentence(exc, provider),
            form="provider",
            status=exc.status_code,
        )
    return sign_in_state.clear_binding_cookie(response, context)


@router.post("/account/sign-in/apple/callback")
async def apple_callback(request: Request, visit: Visit, db: SessionDep) -> Response:
    return await _callback(request, visit, db, "apple")


@router.post("/account/sign-in/google/callback")
async def google_callback(request: Request, visit: Visit, db: SessionDep) -> Response:
    return await _callback(request, visit, db, "google")

