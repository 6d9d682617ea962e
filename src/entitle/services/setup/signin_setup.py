"""The Sign in with Apple and Google sign-in cards: the client ids, proven by fetching the signing keys.

An identity token can only be verified with the provider's published keys, so fetching them from the
configured URL (through the same `fetch_jwks` the verifiers use) is what proves sign-in can work: the
card reports how many signing keys came back, or why none did, in one sentence.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Literal

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.db.types import utcnow
from entitle.identity.errors import IdentityProviderUnavailable
from entitle.identity.jwks import fetch_jwks
from entitle.services.setup import settings_cards
from entitle.services.setup.cards import Card, CardState

Provider = Literal["apple", "google"]


NAMES: dict[Provider, str] = {"apple": "Apple", "google": "Google"}


@dataclass(frozen=True)
class KeysCheck:
    ok: bool
    keys: int
    sentence: str
    checked_at: dt.datetime


def jwks_url(context: AppContext, provider: Provider) -> str:
    settings = context.settings
    return settings.apple_signin_jwks_url if provider == "apple" else settings.google_jwks_url


def client_ids(context: AppContext, provider: Provider) -> list[str]:
    settings = context.settings
    if provider == "apple":
        ids = [*settings.apple_signin_client_ids, settings.apple_signin_web_client_id]
    else:
        ids = [*settings.google_client_ids, settings.google_web_client_id]
    return [client_id for client_id in ids if client_id]


async def check(context: AppContext, provider: Provider, *, url: str | None = None) -> KeysCheck:
    """Fetch `provider`'s signing keys from `url` (the configured key URL by default)."""
    name = NAMES[provider]
    url = url or jwks_url(context, provider)
    now = utcnow()
    try:
        keys = await fetch_jwks(context.http, url)
    except IdentityProviderUnavailable as exc:
        cause = exc.__cause__
        reason = (str(cause) or type(cause).__name__) if isinstance(cause, httpx.HTTPError) else exc.message
        return KeysCheck(
            False, 0, f"{name}'s signing keys could not be fetched from {url}: {reason.rstrip('.')}.", now
        )
    if not keys:
        return KeysCheck(False, 0, f"The key set at {url} has no RS256 signing keys.", now)
    count = f"{len(keys)} signing key" + ("" if len(keys) == 1 else "s")
    return KeysCheck(True, len(keys), f"{name}'s keys fetched: {count}.", now)


async def card(
    db: AsyncSession, context: AppContext, provider: Provider = "apple", *, checked: KeysCheck | None = None
) -> Card:
    """The card of `provider`; `checked` is a check just made (the page passes it to show its answer)."""
    base = await (settings_cards.apple_signin if provider == "apple" else settings_cards.google_signin)(
        db, context
    )
    if base.state == "not_set" or checked is None:
        return base
    state: CardState = "verified" if checked.ok else "failing"
    return replace(base, state=state, sentence=checked.sentence, checked_at=checked.checked_at)


async def apple_card(db: AsyncSession, context: AppContext, *, checked: KeysCheck | None = None) -> Card:
    return await card(db, context, "apple", checked=checked)


async def google_card(db: AsyncSession, context: AppContext, *, checked: KeysCheck | None = None) -> Card:
    return await card(db, context, "google", checked=checked)
