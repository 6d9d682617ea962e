"""Page links: how an app holding an access token shows a hosted page signed in, without a second sign-in.

The app asks `POST /v1/me/page-link` and opens the answer's `url` in a browser. The link is single-use,
lives 60 seconds and is stored hashed; its first open is exchanged for an ordinary page session (a new
refresh-token family, so "sign out everywhere" ends it like any other), and the browser is sent on to the
page's clean address, so the token leaves the address bar and never reaches history. Only a small closed
set of pages can be opened this way: a link is a sign-in, and must not become a way to post a form.

A link is spent by a conditional UPDATE (`used_at IS NULL`), so two opens at once cannot both sign in.
An account holds at most `MAX_OUTSTANDING` unspent links: enough for any app, not a table to fill.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import PageLink
from entitle.db.types import utcnow
from entitle.errors import EntitleError, RateLimited

LINK_TTL = timedelta(seconds=60)
LINK_PREFIX = "pl_"
MAX_OUTSTANDING = 10
Page = Literal["account", "pricing", "billing"]
# Where each page link leads once signed in. `billing` goes on to the Stripe Billing Portal, which returns
# to the account page, signed in (a portal session the app opens itself returns to a signed-out page).
PAGES: dict[str, str] = {
    "account": "/account",
    "pricing": "/pricing",
    "billing": "/account",
}
OPEN_PATH = "/account/open"


def page_path(page: str) -> str:
    """Where a link to `page` leads (the account page for a page no longer in the set)."""
    return PAGES.get(page, "/account")


class PageLinkRefused(EntitleError):
    """The link is unknown, expired or already used (400); a known link names its account and page."""

    status_code = 400
    default_code = "invalid_page_link"

    def __init__(self, message: str, *, code: str | None = None, link: PageLink | None = None) -> None:
        super().__init__(message, code=code)
        # Plain values, not the row: the transaction that read it is rolled back by now.
        self.account_id = link.account_id if link else None
        self.page = link.page if link else None


@dataclass(frozen=True, slots=True)
class IssuedLink:
    token: str
    expires_in: int


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue(db: AsyncSession, account_id: uuid.UUID, page: Page) -> IssuedLink:
    """A fresh link to `page` for this account."""
    now = utcnow()
    outstanding = await db.scalar(
        select(func.count())
        .select_from(PageLink)
        .where(PageLink.account_id == account_id, PageLink.used_at.is_(None), PageLink.expires_at > now)
    )
    if (outstanding or 0) >= MAX_OUTSTANDING:
        raise RateLimited(
            "Too many unused page links for this account; open one, or wait a minute.",
            retry_after=int(LINK_TTL.total_seconds()),
        )
    token = LINK_PREFIX + secrets.token_urlsafe(32)
    db.add(
        PageLink(
            token_hash=_hash(token),
            account_id=account_id,
            page=page,
            created_at=now,
            expires_at=now + LINK_TTL,
        )
    )
    await db.flush()
    return IssuedLink(token=token, expires_in=int(LINK_TTL.total_seconds()))


async def spend(db: AsyncSession, token: str) -> PageLink:
    """Use the link once; raises PageLinkRefused when it is unknown, expired or already used."""
    if not token.startswith(LINK_PREFIX) or len(token) > 200:
        raise PageLinkRefused("This link is not valid.")
    link = await db.scalar(select(PageLink).where(PageLink.token_hash == _hash(token)))
    if link is None or link.page not in PAGES:  # a page since removed from the set
        raise PageLinkRefused("This link is not valid.")
    now = utcnow()
    if link.used_at is not None:
        raise PageLinkRefused("This link was already used.", code="page_link_used", link=link)
    if link.expires_at <= now:
        raise PageLinkRefused("This link has expired.", code="page_link_expired", link=link)
    claimed = await db.execute(
        update(PageLink)
        .where(PageLink.token_hash == link.token_hash, PageLink.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise PageLinkRefused("This link was already used.", code="page_link_used", link=link)
    return link


async def forget_old_links(db: AsyncSession) -> int:
    result = await db.execute(delete(PageLink).where(PageLink.expires_at < utcnow() - LINK_TTL))
    return int(result.rowcount)  # type: ignore[attr-defined]
