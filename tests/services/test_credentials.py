"""Passwords over mail, called directly: who gets a reset link, and who an address's password belongs to."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import AccountToken, Identity
from entitle.core.models.mail import OutboundMail
from entitle.errors import Conflict
from entitle.identity import VerifiedIdentity
from entitle.services.identity import accounts, credentials, identities
from tests.factories import make_account


def google(sub: str = "g-1", email: str = "pat@example.com") -> VerifiedIdentity:
    return VerifiedIdentity(
        provider="google", subject=sub, email=email, email_verified=True, is_private_relay=False
    )


async def test_forgot_for_an_unknown_address_stores_and_sends_nothing(db: AsyncSession) -> None:
    await credentials.request_password_reset(db, "nobody@example.com")
    assert (await db.scalars(select(OutboundMail))).all() == []
    assert (await db.scalars(select(AccountToken))).all() == []


async def test_a_google_only_account_can_get_a_password_through_a_reset(db: AsyncSession) -> None:
    owner = await identities.sign_in_with_identity(db, google())
    await credentials.request_password_reset(db, "Pat@Example.com")
    [token_row] = (await db.scalars(select(AccountToken))).all()
    assert token_row.account_id == owner.account.id and token_row.purpose == "reset_password"
    assert token_row.token_hash not in str((await db.scalars(select(OutboundMail.data))).all())


async def test_an_account_that_proved_the_address_takes_it_from_an_unverified_squatter(
    db: AsyncSession,
) -> None:
    squatter = await make_account(db, email="pat@example.com")
    owner = (await identities.sign_in_with_identity(db, google(sub="g-0", email="owner@example.com"))).account
    await identities.link_identity(db, owner, google())  # proves pat@ for the owner's account
    owner.email = "pat@example.com"
    await credentials.set_password(
        db, owner, password="the owner's passphrase", current_password=None, keep_session=None
    )
    await db.commit()
    password_identity = await db.scalar(
        select(Identity).where(Identity.provider == "email", Identity.subject == "pat@example.com")
    )
    assert password_identity is not None and password_identity.account_id == owner.id
    assert password_identity.email_verified
    signed_in = await accounts.authenticate_password(
        db, email="pat@example.com", password="the owner's passphrase"
    )
    assert signed_in.id == owner.id != squatter.id


async def test_a_verified_password_is_never_taken_over(db: AsyncSession) -> None:
    first = await make_account(db, email="pat@example.com")
    first.identities[0].email_verified = True
    await db.commit()
    other = (await identities.sign_in_with_identity(db, google(sub="g-0", email="other@example.com"))).account
    other.email = "pat@example.com"
    with pytest.raises(Conflict) as refused:
        await credentials.set_password(
            db, other, password="another passphrase", current_password=None, keep_session=None
        )
    assert refused.value.code == "email_taken"
