"""The first run: a fresh install with no operator prints a one-time link that makes the first one.

Whoever can read the server's log can open the dashboard; nobody else can, and nobody at all once an
operator exists. The link is kept hashed and spent by a conditional UPDATE (`used_at IS NULL`), so two
opens at once cannot both make an operator; every link stops working the moment any operator exists
(made here or with `entitle admin add`).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import TYPE_CHECKING

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import Account, Operator
from entitle.core.models.setup import SetupLink
from entitle.db.types import utcnow
from entitle.errors import EntitleError
from entitle.services.identity import accounts, operators

if TYPE_CHECKING:
    from entitle.context import AppContext

log = logging.getLogger(__name__)

FIRST_RUN_PATH = "/admin/first-run"
MAX_TOKEN_LENGTH = 100


class SetupLinkRefused(EntitleError):
    status_code = 410
    default_code = "setup_link_used"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def has_operator(db: AsyncSession) -> bool:
    return bool(await db.scalar(select(exists().where(Operator.account_id.is_not(None)))))


async def announce_first_run(context: AppContext) -> str | None:
    """With no operator yet, make a one-time link, say it in the log and answer it; None otherwise."""
    async with context.database.transaction() as db:
        if await has_operator(db):
            return None
        token = secrets.token_urlsafe(32)
        db.add(SetupLink(token_hash=_hash(token)))
    url = f"{context.settings.public_url}{FIRST_RUN_PATH}?token={token}"
    log.warning("no operator yet: open %s to make the first one (the link works once)", url)
    return url


async def link_usable(db: AsyncSession, token: str) -> bool:
    if not token or len(token) > MAX_TOKEN_LENGTH or await has_operator(db):
        return False
    link = await db.get(SetupLink, _hash(token))
    return link is not None and link.used_at is None


def _refused() -> SetupLinkRefused:
    return SetupLinkRefused(
        "This set-up link was already used, or an operator exists: sign in instead.", code="setup_link_used"
    )


async def _spend(db: AsyncSession, token: str) -> None:
    """Spend the link, once: 410 `setup_link_used` when it was used, is unknown, or an operator exists."""
    if not await link_usable(db, token):
        raise _refused()
    spent = await db.execute(
        update(SetupLink)
        .where(SetupLink.token_hash == _hash(token), SetupLink.used_at.is_(None))
        .values(used_at=utcnow())
    )
    if not spent.rowcount:  # type: ignore[attr-defined]
        raise _refused()


async def make_first_operator(db: AsyncSession, token: str, *, email: str, password: str) -> Account:
    """Spend the link and make an account with this email and password the first operator (410
    `setup_link_used` when the link was used, is unknown, or an operator exists already)."""
    await _spend(db, token)
    account = await accounts.register_with_password(db, email=email, password=password)
    await operators.add_operator(db, str(account.id), added_by="first-run")
    return account


async def make_operator_of(db: AsyncSession, token: str, account: Account) -> Account:
    """Spend the link and make an account already signed in (with Apple or Google) the first operator;
    the same refusals as `make_first_operator`."""
    await _spend(db, token)
    await operators.add_operator(db, str(account.id), added_by="first-run")
    return account
