"""Email + password sign-up and sign-in, refresh-token rotation, sign-out, verification and recovery."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from entitle.errors import Unauthorized
from entitle.services.identity import accounts, credentials, tokens
from entitle.web.deps import ContextDep, SessionDep, SignedIn, client_ip
from entitle.web.schemas import (
    Credentials,
    EmailBody,
    LoginCredentials,
    RefreshBody,
    ResetPasswordBody,
    TokenBody,
    account_json,
    session_json,
)

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post("/register", status_code=201)
async def register(
    body: Credentials, request: Request, context: ContextDep, db: SessionDep
) -> dict[str, Any]:
    await context.rate_limiter.hit("register", ip=client_ip(request), address=body.email, mail=True)
    account = await accounts.register_with_password(db, email=body.email, password=body.password)
    pair = await tokens.start_session(
        db, context.tokens, account.id, user_agent=request.headers.get("user-agent")
    )
    return session_json(account, pair)


@router.post("/login")
async def login(
    body: LoginCredentials, request: Request, context: ContextDep, db: SessionDep
) -> dict[str, Any]:
    await context.rate_limiter.hit("login", ip=client_ip(request), address=body.email)
    account = await accounts.authenticate_password(db, email=body.email, password=body.password)
    pair = await tokens.start_session(
        db, context.tokens, account.id, user_agent=request.headers.get("user-agent")
    )
    await db.refresh(account, ["identities"])
    return session_json(account, pair)


@router.post("/refresh")
async def refresh(body: RefreshBody, context: ContextDep, db: SessionDep) -> dict[str, Any]:
    try:
        pair = await tokens.rotate(db, context.tokens, body.refresh_token)
    except tokens.RefreshTokenReused:
        # Keep the family's revocation even though the request fails.
        await db.commit()
        raise
    account = await accounts.get_account(db, pair.account_id)
    if account is None:
        raise Unauthorized("The account for this token no longer exists.", code="invalid_refresh_token")
    return session_json(account, pair)


@router.post("/logout", status_code=204)
async def logout(signed_in: SignedIn, db: SessionDep) -> Response:
    # A token from the app's own identity provider has no session here: its sign-out is the app's.
    if signed_in.session_id is not None:
        await tokens.revoke_family(db, signed_in.session_id, reason="logout")
    return Response(status_code=204)


@router.post("/password/forgot", status_code=202)
async def forgot_password(
    body: EmailBody, request: Request, context: ContextDep, db: SessionDep
) -> dict[str, Any]:
    """Mail a reset link when the address has an account; the answer is the same either way."""
    await context.rate_limiter.hit("forgot", ip=client_ip(request), address=body.email, mail=True)
    await credentials.request_password_reset(db, body.email)
    return {"accepted": True}


@router.post("/password/reset")
async def reset_password(
    body: ResetPasswordBody, request: Request, context: ContextDep, db: SessionDep
) -> dict[str, Any]:
    await context.rate_limiter.hit("reset", ip=client_ip(request))
    account = await credentials.reset_password(db, body.token, body.password)
    pair = await tokens.start_session(
        db, context.tokens, account.id, user_agent=request.headers.get("user-agent")
    )
    return session_json(account, pair)


@router.post("/email/verify")
async def verify_email(
    body: TokenBody, request: Request, context: ContextDep, db: SessionDep
) -> dict[str, Any]:
    await context.rate_limiter.hit("verify", ip=client_ip(request))
    account = await credentials.verify_email(db, body.token)
    return {"account": account_json(account)}
