"""Accounts for people who sign in through the app's own identity provider (ENTITLE_EXTERNAL_AUTH_*).

The token's `sub` is the account's `external_id`; the account is made the first time a token for it is
seen. That happens in a transaction of its own, outside the request's unit of work (GET requests read
without one), and a race between two first requests is settled by the unique external_id.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from entitle.core.models.accounts import Account
from entitle.db.engine import Database
from entitle.email_addresses import canonical_email_or_none
from entitle.errors import Unauthorized
from entitle.identity.external import ExternalTokenVerifier
from entitle.services.identity import accounts
from entitle.services.identity.tokens import AccessClaims

MAX_EXTERNAL_ID_LENGTH = 255


async def claims_for_external_token(
    database: Database, verifier: ExternalTokenVerifier, token: str
) -> AccessClaims:
    claims = await verifier.verify(token)
    subject = claims["sub"]
    if len(subject) > MAX_EXTERNAL_ID_LENGTH:
        raise Unauthorized("The token's subject is too long to be an account id.", code="invalid_token")
    # Checked like a typed address; an invalid one is none (the account is made without an address).
    email = canonical_email_or_none(claims.get("email"))
    account_id = await account_for_external_id(database, subject, email=email)
    return AccessClaims(
        account_id=account_id,
        session_id=None,
        expires_at=datetime.fromtimestamp(float(claims["exp"]), UTC),
    )


async def account_for_external_id(database: Database, external_id: str, *, email: str | None) -> uuid.UUID:
    found = await _find(database, external_id)
    if found is not None:
        return found
    try:
        async with database.transaction() as db:
            account = await accounts.create_account(
                db,
                email=email,
                via="external",
                external_id=external_id,
            )
            return account.id
    except IntegrityError:
        # Another request made it first; use theirs.
        found = await _find(database, external_id)
        if found is None:
            raise
        return found


async def _find(database: Database, external_id: str) -> uuid.UUID | None:
    async with database.read_sessionmaker() as db:
        row = (
            await db.execute(select(Account.id, Account.deleted_at).where(Account.external_id == external_id))
        ).one_or_none()
    if row is None:
        return None
    if row.deleted_at is not None:
        raise Unauthorized("The account for this token was deleted.", code="invalid_token")
    return uuid.UUID(str(row.id))
