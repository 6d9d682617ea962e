"""The `state` of a web sign-in with Apple or Google, and the cookie that ties it to one browser.

Apple and Google post the person back to us (`response_mode=form_post`) from their own site, so the
callback is a cross-site POST that cannot carry our CSRF token. What protects it instead:

- `state` is signed (HMAC under a key derived from the access-token key, like the page cookies) and
  expires after ten minutes; it carries everything the callback needs: the provider, the nonce the
  identity token must repeat, where to go next and the chosen plan. Nothing is kept on the server.
- It also carries the hash of a random value kept in a short-lived HttpOnly cookie set when the flow
  starts; the callback refuses a state whose cookie did not come back with it. Without that, an
  attacker could start a sign-in of their own and make a victim's browser post the attacker's answer
  to us (login CSRF: the victim would then pay into the attacker's account). The callback always
  clears the cookie, so a state works once per browser; an Apple code works once at Apple too, and a
  posted answer is useless in any other browser.

Why the cookie is `SameSite=None` over https: browsers withhold `Lax` cookies from cross-site POSTs, and
the callback is exactly that. `None` is only accepted together with `Secure`, which needs https, so
over plain http (development) the cookie is `Lax`: it then comes back only when the provider posts
from the same site, as the local stand-ins do (127.0.0.1 on another port is the same site). Apple
only returns to https addresses anyway; to try real Google on a development machine, serve it over
https (a tunnel) with `ENTITLE_PUBLIC_URL` set to that address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from fastapi import Request, Response

from entitle.constant_time import same_secret
from entitle.context import AppContext
from entitle.errors import InvalidRequest
from entitle.web.pages.visits import cookie_name_for

Provider = Literal["apple", "google"]

BINDING_COOKIE = "entitle_sign_in"
# Long enough for a person to finish two-factor at Apple or Google; Apple's code lives five minutes.
STATE_LIFETIME = 600
MAX_STATE_LENGTH = 2048


class InvalidSignInState(InvalidRequest):
    """The posted state is forged, expired, for another provider, or not from this browser (400)."""

    status_code = 400
    default_code = "invalid_sign_in_state"


@dataclass(frozen=True, slots=True)
class SignInState:
    provider: Provider
    nonce: str
    next_path: str
    product: str
    expires_at: int
    # SHA-256 (base64url) of the browser's binding cookie.
    binding: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(context: AppContext, payload: str) -> str:
    key = context.tokens.key.derived_secret("entitle web sign-in state v1")
    return _b64(hmac.new(key, f"state|{payload}".encode(), hashlib.sha256).digest())


def _binding_hash(cookie: str) -> str:
    return _b64(hashlib.sha256(cookie.encode()).digest())


def start(
    context: AppContext, provider: Provider, *, next_path: str, product: str, now: float | None = None
) -> tuple[SignInState, str, str]:
    """A fresh state: (the state, its signed form for the provider, the value of the binding cookie)."""
    now = time.time() if now is None else now
    cookie = secrets.token_urlsafe(32)
    state = SignInState(
        provider=provider,
        nonce=secrets.token_urlsafe(24),
        next_path=next_path,
        product=product,
        expires_at=int(now) + STATE_LIFETIME,
        binding=_binding_hash(cookie),
    )
    document = {
        "p": state.provider,
        "n": state.nonce,
        "x": state.next_path,
        "r": state.product,
        "e": state.expires_at,
        "b": state.binding,
    }
    payload = _b64(json.dumps(document, separators=(",", ":")).encode())
    return state, f"{payload}.{_mac(context, payload)}", cookie


def read(context: AppContext, signed: str | None, provider: Provider) -> SignInState:
    """The state as we signed it, or InvalidSignInState; says nothing yet about the browser."""
    refused = InvalidSignInState("This sign-in did not start here or took too long; please try again.")
    if not signed or len(signed) > MAX_STATE_LENGTH or signed.count(".") != 1:
        raise refused
    payload, mac = signed.split(".")
    if not same_secret(mac, _mac(context, payload)):
        raise refused
    try:
        document = json.loads(_unb64(payload))
        state = SignInState(
            provider=document["p"],
            nonce=str(document["n"]),
            next_path=str(document["x"]),
            product=str(document["r"]),
            expires_at=int(document["e"]),
            binding=str(document["b"]),
        )
    except (ValueError, KeyError, TypeError) as exc:  # signed by us, so only a bug lands here
        raise refused from exc
    if state.provider != provider or state.expires_at < time.time():
        raise refused
    return state


def check_browser(state: SignInState, cookie: str | None) -> None:
    """Refuse a state that was started in another browser (or whose cookie the browser dropped)."""
    if not cookie or not same_secret(_binding_hash(cookie), state.binding):
        raise InvalidSignInState(
            "This sign-in was started in another browser window, or your browser did not keep our "
            "cookie; allow cookies for this site and try again."
        )


# --- the binding cookie ------------------------------------------------------------------------------------
def _cookie_attributes(context: AppContext) -> tuple[str, bool, Literal["none", "lax"]]:
    settings = context.settings
    name = cookie_name_for(BINDING_COOKIE, secure=not settings.is_development)
    https = settings.public_url.startswith("https://") or not settings.is_development
    # See the module docstring: None for the cross-site POST back, which browsers allow only with Secure.
    return name, https, "none" if https else "lax"


def binding_cookie(request: Request, context: AppContext) -> str | None:
    name, _secure, _samesite = _cookie_attributes(context)
    return request.cookies.get(name)


def set_binding_cookie(response: Response, context: AppContext, value: str) -> Response:
    name, secure, samesite = _cookie_attributes(context)
    response.set_cookie(
        name, value, max_age=STATE_LIFETIME, path="/", secure=secure, httponly=True, samesite=samesite
    )
    return response


def clear_binding_cookie(response: Response, context: AppContext) -> Response:
    name, secure, samesite = _cookie_attributes(context)
    response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite=samesite)
    return response
