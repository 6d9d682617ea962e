"""The cookie that binds a visitor's Checkout to the browser that opened it (pay first, the account after).

A random value per browser, HttpOnly and SameSite=Lax (it comes back on the top-level GET from Stripe to
the success page), `__Host-` outside development like the page cookies. The server stores only its
SHA-256 beside each Checkout Session the browser opened (services/billing/guest_checkout.py).
"""

from __future__ import annotations

from fastapi import Request, Response

from entitle.context import AppContext
from entitle.services.billing.guest_checkout import BROWSER_COOKIE, BROWSER_COOKIE_SECONDS
from entitle.web.pages.visits import cookie_name_for


def browser_secret(request: Request, context: AppContext) -> str | None:
    """The guest cookie this browser holds, if any."""
    secure = not context.settings.is_development
    value = request.cookies.get(cookie_name_for(BROWSER_COOKIE, secure=secure))
    return value if value and 20 <= len(value) <= 100 else None


def remember_browser(response: Response, context: AppContext, secret: str) -> None:
    secure = not context.settings.is_development
    response.set_cookie(
        cookie_name_for(BROWSER_COOKIE, secure=secure),
        secret,
        max_age=BROWSER_COOKIE_SECONDS,
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
    )
