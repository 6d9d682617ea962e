"""Named dependencies every route uses: the context, the unit of work, the signed-in account."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.constant_time import same_secret
from entitle.context import AppContext
from entitle.core.models.accounts import Account
from entitle.errors import Forbidden, Unauthorized
from entitle.services.identity.accounts import check_session, load_account
from entitle.services.identity.external_accounts import claims_for_external_token
from entitle.services.identity.tokens import AccessClaims
from entitle.settings import Settings
from entitle.storable_text import require_storable


# Dependencies are `async def` even when they never await: FastAPI runs plain `def` dependencies in a
# worker thread, which cost more than the rest of a cheap request (measured by bench/bench_entitlements.py).
async def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_settings(context: ContextDep) -> Settings:
    return context.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(request: Request, context: ContextDep) -> AsyncIterator[AsyncSession]:
    """One unit of work per request: committed when the route returns, rolled back if it raises.

    GET requests only read (every GET route is safe in the HTTP sense), so they get a session without a
    transaction: no BEGIN/COMMIT round trips on the hottest paths.
    """
    if request.method in ("GET", "HEAD"):
        async with context.database.read_sessionmaker() as reader:
            yield reader
        return
    async with context.database.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


# scope="function": commit before the response is sent, so a client that got 2xx can rely on the write
# (and a failed commit becomes an error response instead of a lost write after a 200).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def storable_parameters(request: Request) -> None:
    """Every route's query and path parameters, refused by name when the database could not store them."""
    for name, value in request.query_params.multi_items():
        require_storable(value, field=f"The query parameter `{name}`")
    for name, value in request.path_params.items():
        if isinstance(value, str):
            require_storable(value, field=f"The path parameter `{name}`")


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "Sign in first: send `Authorization: Bearer <access token>`.", code="missing_token"
        )
    return token.strip()


async def verified_claims(request: Request, context: AppContext) -> AccessClaims:
    """The claims of the bearer token: entitle's own access token, or, with ENTITLE_EXTERNAL_AUTH_* set,
    a token from the app's own identity provider (its `sub` is the account's external_id), so every
    signed-in route serves apps that keep their own sign-in. The session is not checked here."""
    token = bearer_token(request)
    external = context.accounts.external_auth
    if external is not None and external.is_from_issuer(token):
        return await claims_for_external_token(context.database, external, token)
    return context.tokens.verify_access_token(token)


async def get_signed_in(request: Request, context: ContextDep, db: SessionDep) -> AccessClaims:
    """The verified access token of a live session; routes that need only ids stop here."""
    claims = await verified_claims(request, context)
    await check_session(db, claims)
    return claims


SignedIn = Annotated[AccessClaims, Depends(get_signed_in)]


async def get_current_account(claims: SignedIn, db: SessionDep) -> Account:
    return await load_account(db, claims.account_id)


CurrentAccount = Annotated[Account, Depends(get_current_account)]


async def require_admin(request: Request, settings: SettingsDep) -> None:
    """The app's own backend, calling with ENTITLE_ADMIN_API_KEY."""
    configured = settings.admin_api_key
    if configured is None or not configured.get_secret_value():
        raise Forbidden("No server key is configured on this server.", code="admin_api_disabled")
    presented = bearer_token(request)
    # Constant-time comparison, so the key cannot be guessed one character at a time.
    if not same_secret(presented, configured.get_secret_value()):
        raise Unauthorized("The server key is not valid.", code="invalid_server_key")


AdminDep = Annotated[None, Depends(require_admin)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None
