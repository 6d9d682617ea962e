"""Sign in with Apple and Google, linking and unlinking identities, and Apple's account notifications."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from entitle.identity import AppleIdentityVerifier, GoogleIdentityVerifier
from entitle.services.identity import apple_tokens, identities, tokens
from entitle.services.identity.accounts import SignedIn
from entitle.web.deps import ContextDep, CurrentAccount, SessionDep, client_ip
from entitle.web.schemas import StrictBody, account_json, identity_json, session_json

router = APIRouter(tags=["identity"])

MAX_TOKEN_LENGTH = 8192


class AppleName(StrictBody):
    # iOS hands over PersonNameComponents (givenName/familyName); Apple's JS SDK firstName/lastName.
    givenName: str | None = Field(default=None, max_length=100)  # noqa: N815 (Apple's spelling)
    middleName: str | None = Field(default=None, max_length=100)  # noqa: N815
    familyName: str | None = Field(default=None, max_length=100)  # noqa: N815
    firstName: str | None = Field(default=None, max_length=100)  # noqa: N815
    lastName: str | None = Field(default=None, max_length=100)  # noqa: N815

    def full(self) -> str:
        parts = (self.givenName or self.firstName, self.middleName, self.familyName or self.lastName)
        return " ".join(part.strip() for part in parts if part and part.strip())


class AppleSignIn(StrictBody):
    id_token: str = Field(min_length=1, max_length=MAX_TOKEN_LENGTH)
    # The raw nonce the client generated; the token may carry it raw or as its SHA-256 hex.
    nonce: str | None = Field(default=None, min_length=1, max_length=512)
    # Sent by Apple only on the first authorization; the client forwards it once.
    name: str | AppleName | None = Field(default=None)
    # Single-use, five minutes: exchanged at Apple for the refresh token that deletion must revoke.
    authorization_code: str | None = Field(default=None, min_length=1, max_length=1024)

    def display_name(self) -> str | None:
        if isinstance(self.name, AppleName):
            return self.name.full() or None
        return self.name[:200] if self.name else None


class GoogleSignIn(StrictBody):
    id_token: str = Field(min_length=1, max_length=MAX_TOKEN_LENGTH)


def _apple(context: Any) -> AppleIdentityVerifier:
    verifier: AppleIdentityVerifier = context.identity_verifiers["apple"]
    return verifier


def _google(context: Any) -> GoogleIdentityVerifier:
    verifier: GoogleIdentityVerifier = context.identity_verifiers["google"]
    return verifier


async def _signed_in(
    request: Request, context: ContextDep, db: SessionDep, signed_in: SignedIn
) -> JSONResponse:
    pair = await tokens.start_session(
        db, context.tokens, signed_in.account.id, user_agent=request.headers.get("user-agent")
    )
    return JSONResponse(session_json(signed_in.account, pair), status_code=201 if signed_in.created else 200)


@router.post("/v1/auth/apple", responses={201: {"description": "A new account was created"}})
async def sign_in_with_apple(
    body: AppleSignIn, request: Request, context: ContextDep, db: SessionDep
) -> JSONResponse:
    await context.rate_limiter.hit("apple", ip=client_ip(request))
    verified = await _apple(context).verify(body.id_token, nonce=body.nonce)
    signed_in = await identities.sign_in_with_apple(
        db,
        context.accounts.apple_api,
        context.accounts.secret_box,
        verified,
        code=body.authorization_code,
        name=body.display_name(),
    )
    return await _signed_in(request, context, db, signed_in)


@router.post("/v1/auth/google", responses={201: {"description": "A new account was created"}})
async def sign_in_with_google(
    body: GoogleSignIn, request: Request, context: ContextDep, db: SessionDep
) -> JSONResponse:
    await context.rate_limiter.hit("google", ip=client_ip(request))
    verified = await _google(context).verify(body.id_token)
    signed_in = await identities.sign_in_with_identity(db, verified)
    return await _signed_in(request, context, db, signed_in)


async def _linked(account: Any, identity: Any, created: bool) -> JSONResponse:
    body = {"identity": identity_json(identity), "account": account_json(account)}
    return JSONResponse(body, status_code=201 if created else 200)


@router.post("/v1/me/identities/apple")
async def link_apple(
    body: AppleSignIn, request: Request, account: CurrentAccount, context: ContextDep, db: SessionDep
) -> JSONResponse:
    await context.rate_limiter.hit("link", ip=client_ip(request))
    verified = await _apple(context).verify(body.id_token, nonce=body.nonce)
    exchanged = await apple_tokens.exchange_code(
        context.accounts.apple_api, body.authorization_code, verified
    )
    identity, created = await identities.link_identity(db, account, verified, name=body.display_name())
    await apple_tokens.keep(db, context.accounts.secret_box, account.id, verified, exchanged)
    return await _linked(account, identity, created)


@router.post("/v1/me/identities/google")
async def link_google(
    body: GoogleSignIn, request: Request, account: CurrentAccount, context: ContextDep, db: SessionDep
) -> JSONResponse:
    await context.rate_limiter.hit("link", ip=client_ip(request))
    verified = await _google(context).verify(body.id_token)
    identity, created = await identities.link_identity(db, account, verified)
    return await _linked(account, identity, created)


# Only a UUID matches, so /v1/me/identities/apple and /google serve POST alone (their Allow says so).
@router.delete("/v1/me/identities/{identity_id:uuid}", status_code=204)
async def unlink(identity_id: uuid.UUID, account: CurrentAccount, db: SessionDep) -> Response:
    await identities.unlink_identity(db, account, identity_id)
    return Response(status_code=204)
