"""Who is looking at a hosted page: the cookie session and the CSRF token of every form.

A page session is an ordinary entitle session (a refresh-token family): signing in on a page starts
one, so "sign out everywhere", a password reset and account deletion end page sessions exactly as they
end the apps' sessions. The cookie holds the session id and an HMAC of it under a key derived from the
access-token signing key (every process of one deployment shares that key), so a cookie cannot be
forged and nothing secret is stored in it; the session row decides whether it is still live.

CSRF: a random `csrf` cookie, and in every form an HMAC of that cookie bound to the session (the signed
double-submit pattern): another site can make a browser send the cookie, but cannot read it to compute
the form's token. SameSite=Lax on both cookies stops cross-site POSTs from carrying them at all in
current browsers; the token covers the rest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.constant_time import same_secret
from entitle.context import AppContext
from entitle.core.models.accounts import Account, RefreshTokenFamily
from entitle.db.types import utcnow
from entitle.errors import Forbidden
from entitle.services.identity import tokens
from entitle.services.identity.accounts import get_account
from entitle.web.deps import ContextDep, SessionDep

SESSION_COOKIE = "entitle_session"
CSRF_COOKIE = "entitle_csrf"
CSRF_FIELD = "csrf_token"
# Outside development the cookies carry the __Host- prefix: the browser then only accepts them over
# https, for this exact host, on path /: no subdomain can plant or shadow them.
SECURE_PREFIX = "__Host-"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class PageVisit:
    """One request to a page: the signed-in account (if any) and the cookies to set on the answer."""

    context: AppContext
    account: Account | None
    session_id: uuid.UUID | None
    csrf_seed: str
    _set_cookies: dict[str, tuple[str, int | None]] = field(default_factory=dict)

    @property
    def csrf_token(self) -> str:
        return _csrf_token(self.context, self.csrf_seed, self.session_id)

    def check_csrf(self, presented: str | None) -> None:
        if not presented or not same_secret(presented, self.csrf_token):
            raise Forbidden(
                "This form has expired or did not come from this site; go back, reload it and try again.",
                code="invalid_csrf_token",
            )

    def sign_in(self, session_id: uuid.UUID, account: Account) -> None:
        """Make this visit signed in; a fresh CSRF seed goes with the new session."""
        self.account, self.session_id = account, session_id
        self.csrf_seed = secrets.token_urlsafe(32)
        lifetime = int(self.context.tokens.refresh_ttl.total_seconds())
        self._set_cookies[SESSION_COOKIE] = (_signed_session(self.context, session_id), lifetime)
        self._set_cookies[CSRF_COOKIE] = (self.csrf_seed, None)

    def sign_out(self) -> None:
        self.account, self.session_id = None, None
        self._set_cookies[SESSION_COOKIE] = ("", 0)

    def write_cookies(self, response: Response) -> Response:
        secure = not self.context.settings.is_development
        for name, (value, max_age) in self._set_cookies.items():
            cookie_name = cookie_name_for(name, secure=secure)
            if max_age == 0:
                response.delete_cookie(cookie_name, path="/", secure=secure, httponly=True, samesite="lax")
                continue
            response.set_cookie(
                cookie_name, value, max_age=max_age, path="/", secure=secure, httponly=True, samesite="lax"
            )
        return response


def cookie_name_for(name: str, *, secure: bool) -> str:
    return SECURE_PREFIX + name if secure else name


def _key(context: AppContext) -> bytes:
    return context.tokens.key.derived_secret("entitle hosted pages v1")


def _csrf_token(context: AppContext, seed: str, session_id: uuid.UUID | None) -> str:
    message = f"csrf|{seed}|{session_id or ''}".encode()
    return _b64(hmac.new(_key(context), message, hashlib.sha256).digest())


def _signed_session(context: AppContext, session_id: uuid.UUID) -> str:
    mac = hmac.new(_key(context), f"session|{session_id}".encode(), hashlib.sha256).digest()
    return f"{session_id}.{_b64(mac)}"


def _session_from_cookie(context: AppContext, value: str | None) -> uuid.UUID | None:
    if not value or len(value) > 200 or "." not in value:
        return None
    raw_id, _, _mac = value.partition(".")
    try:
        session_id = uuid.UUID(raw_id)
    except ValueError:
        return None
    if not same_secret(value, _signed_session(context, session_id)):
        return None
    return session_id


async def _live_session(
    db: AsyncSession, context: AppContext, session_id: uuid.UUID
) -> tuple[uuid.UUID, Account] | None:
    family = await db.scalar(select(RefreshTokenFamily).where(RefreshTokenFamily.id == session_id))
    if family is None or family.revoked_at is not None:
        return None
    # A page session lives as long as a refresh token would; signing in again starts a new one.
    if family.created_at + context.tokens.refresh_ttl < utcnow():
        return None
    account = await get_account(db, family.account_id)
    if account is None or account.is_deleted:
        return None
    return session_id, account


async def get_visit(request: Request, context: ContextDep, db: SessionDep) -> PageVisit:
    secure = not context.settings.is_development
    session_id = _session_from_cookie(
        context, request.cookies.get(cookie_name_for(SESSION_COOKIE, secure=secure))
    )
    live = await _live_session(db, context, session_id) if session_id is not None else None
    seed = request.cookies.get(cookie_name_for(CSRF_COOKIE, secure=secure))
    visit = PageVisit(
        context=context,
        account=live[1] if live else None,
        session_id=live[0] if live else None,
        csrf_seed=seed if seed and 20 <= len(seed) <= 100 else secrets.token_urlsafe(32),
    )
    if seed != visit.csrf_seed:
        visit._set_cookies[CSRF_COOKIE] = (visit.csrf_seed, None)
    if session_id is not None and live is None:
        visit.sign_out()  # an ended or forged session: drop the cookie
    return visit


Visit = Annotated[PageVisit, Depends(get_visit)]


async def start_page_session(
    db: AsyncSession, visit: PageVisit, account: Account, request: Request
) -> None:
    pair = await tokens.start_session(
        db, visit.context.tokens, account.id, user_agent=request.headers.get("user-agent")
    )
    visit.sign_in(pair.session_id, account)
