"""The signed-in account: who am I, delete me, what happened to me, my address and my password."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from entitle.providers.stripe.provider import stripe_provider
from entitle.services.billing import guest_checkout
from entitle.services.identity import accounts, credentials, page_links
from entitle.services.reporting import lookups
from entitle.web.deps import ContextDep, CurrentAccount, SessionDep, SignedIn, client_ip
from entitle.web.schemas import PageLinkBody, RedemptionBody, SetPasswordBody, account_json

router = APIRouter(prefix="/v1/me", tags=["account"])


@router.get("")
async def me(account: CurrentAccount) -> dict[str, Any]:
    return account_json(account)


@router.delete("", status_code=204)
async def delete_me(account: CurrentAccount, context: ContextDep, db: SessionDep) -> Response:
    await accounts.delete_account(db, account, hooks=context.account_deletion_hooks)
    return Response(status_code=204)


@router.post("/email/verification", status_code=202)
async def resend_verification(
    request: Request, account: CurrentAccount, context: ContextDep, db: SessionDep
) -> dict[str, Any]:
    """Mail a fresh verification link for the account's password address (nothing when already verified)."""
    await context.rate_limiter.hit("resend", ip=client_ip(request), address=account.email, mail=True)
    await credentials.resend_verification(db, account)
    return {"accepted": True}


@router.post("/password", status_code=204)
async def set_password(
    body: SetPasswordBody,
    request: Request,
    signed_in: SignedIn,
    account: CurrentAccount,
    context: ContextDep,
    db: SessionDep,
) -> Response:
    """Change the password (current one required), or add one to an Apple or Google account."""
    await context.rate_limiter.hit("password", ip=client_ip(request), address=account.email, mail=True)
    await credentials.set_password(
        db,
        account,
        password=body.password,
        current_password=body.current_password,
        keep_session=signed_in.session_id,
    )
    return Response(status_code=204)


@router.post("/page-link")
async def create_page_link(
    body: PageLinkBody, response: Response, signed_in: SignedIn, context: ContextDep, db: SessionDep
) -> dict[str, Any]:
    """A single-use link (60 s) that opens a hosted page signed in as this account, for an app to open in a
    browser: the first open starts a page session in that browser, then shows the page."""
    link = await page_links.issue(db, signed_in.account_id, body.page)
    # The link signs a browser in: no cache may keep the answer.
    response.headers["Cache-Control"] = "no-store"
    public = context.settings.public_url.rstrip("/")
    return {"url": f"{public}{page_links.OPEN_PATH}?token={link.token}", "expires_in": link.expires_in}


@router.post("/redemptions")
async def redeem(
    body: RedemptionBody, account: CurrentAccount, context: ContextDep, db: SessionDep
) -> dict[str, Any]:
    """A purchase paid before the account existed moves to this account: `token` is the one in the
    mailed link (`/redeem?token=`, opened in the app as a universal link). Answers the entitlements body;
    410 `redemption_expired` when used or expired; 409 when this account already pays for it elsewhere
    (nothing moves)."""
    return await guest_checkout.redeem(db, stripe_provider(context.providers), body.token, account)


EventLimit = Annotated[int, Query(ge=1, le=200)]
EventOffset = Annotated[int, Query(ge=0, le=1_000_000)]
EventType = Annotated[str | None, Query(max_length=80, pattern=r"^[a-z_]+(\.[a-z_]+)*(\.\*)?$")]


@router.get("/events")
async def my_events(
    signed_in: SignedIn,
    db: SessionDep,
    limit: EventLimit = 50,
    offset: EventOffset = 0,
    type: EventType = None,
) -> dict[str, Any]:
    """The account's event log, newest first; `type` matches exactly or, ending in `*`, by prefix."""
    return await lookups.event_log(db, signed_in.account_id, limit=limit, offset=offset, type=type)
