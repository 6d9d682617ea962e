"""The linking rules in services.identities, called directly with verified identities."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import Identity, PasswordCredential, RefreshTokenFamily
from entitle.core.models.events import AccountEvent
from entitle.core.models.mail import OutboundMail
from entitle.errors import Conflict, NotFound, Unauthorized
from entitle.identity import VerifiedIdentity
from entitle.services.identity import accounts, identities, tokens
from tests.factories import DEFAULT_PASSWORD, make_account


def google(
    sub: str = "g-1", email: str | None = "pat@example.com", verified: bool = True, **kw: Any
) -> VerifiedIdentity:
    return VerifiedIdentity(
        provider="google", subject=sub, email=email, email_verified=verified, is_private_relay=False, **kw
    )


def apple(
    sub: str = "a-1",
    email: str | None = "pat@example.com",
    verified: bool = True,
    relay: bool = False,
    **kw: Any,
) -> VerifiedIdentity:
    return VerifiedIdentity(
        provider="apple", subject=sub, email=email, email_verified=verified, is_private_relay=relay, **kw
    )


def _issuer() -> tokens.TokenIssuer:
    return tokens.TokenIssuer(
        tokens.SigningKey.generate(),
        issuer="entitle",
        access_ttl=timedelta(minutes=5),
        refresh_ttl=timedelta(days=1),
    )


def _family_of(pair: tokens.TokenPair) -> Any:
    return jwt.decode(pair.access_token, options={"verify_signature": False})["sid"]


async def event_types(db: AsyncSession, account_id: Any) -> list[str]:
    rows = await db.scalars(
        select(AccountEvent.type)
        .where(AccountEvent.account_id == account_id)
        .order_by(AccountEvent.created_at)
    )
    return list(rows.all())


async def test_first_sign_in_creates_an_account(db: AsyncSession) -> None:
    signed_in = await identities.sign_in_with_identity(db, google(email="Pat@Example.COM"))
    await db.commit()
    assert signed_in.created
    assert signed_in.account.email == "pat@example.com"
    [identity] = signed_in.account.identities
    assert (identity.provider, identity.subject, identity.email, identity.email_verified) == (
        "google",
        "g-1",
        "pat@example.com",
        True,
    )
    assert await event_types(db, signed_in.account.id) == ["account.created", "identity.linked"]


async def test_known_identity_signs_into_its_account_and_refreshes_email(db: AsyncSession) -> None:
    first = await identities.sign_in_with_identity(db, google(email="old@example.com", verified=False))
    again = await identities.sign_in_with_identity(db, google(email="new@example.com", verified=True))
    assert not again.created and again.account.id == first.account.id
    [identity] = again.account.identities
    assert (identity.email, identity.email_verified) == ("new@example.com", True)


async def test_both_verified_links_case_insensitively(db: AsyncSession) -> None:
    via_google = await identities.sign_in_with_identity(db, google(email="Pat@Example.com"))
    via_apple = await identities.sign_in_with_identity(db, apple(email="pAT@example.COM"))
    assert not via_apple.created
    assert via_apple.account.id == via_google.account.id
    assert {i.provider for i in via_apple.account.identities} == {"google", "apple"}


async def test_unverified_new_email_never_links(db: AsyncSession) -> None:
    via_apple = await identities.sign_in_with_identity(db, apple())
    via_google = await identities.sign_in_with_identity(db, google(verified=False))
    assert via_google.created and via_google.account.id != via_apple.account.id


async def test_unverified_existing_email_never_links(db: AsyncSession) -> None:
    via_google = await identities.sign_in_with_identity(db, google(verified=False))
    via_apple = await identities.sign_in_with_identity(db, apple(verified=True))
    assert via_apple.created and via_apple.account.id != via_google.account.id


async def test_private_relay_never_links_either_way(db: AsyncSession) -> None:
    relay = "k2x9@privaterelay.appleid.com"
    via_apple = await identities.sign_in_with_identity(db, apple(email=relay, relay=True))
    via_google = await identities.sign_in_with_identity(db, google(email=relay))
    assert via_google.created and via_google.account.id != via_apple.account.id
    # The domain alone is enough, even if a token forgot to say so.
    second_apple = await identities.sign_in_with_identity(db, apple(sub="a-2", email=relay, relay=False))
    assert second_apple.created and second_apple.account.id not in {
        via_apple.account.id,
        via_google.account.id,
    }


async def test_unverified_password_account_is_secured_and_joined(db: AsyncSession) -> None:
    squatter = await make_account(db, email="victim@example.com")
    squatter_session = await tokens.start_session(db, _issuer(), squatter.id)
    relay, _ = await identities.link_identity(
        db, squatter, apple(sub="a-squat", email="s@privaterelay.appleid.com", relay=True)
    )
    victim = await identities.sign_in_with_identity(db, google(email="Victim@example.com"))
    await db.commit()
    # One account: what it owns stays; only ways in that proved the address remain.
    assert not victim.created and victim.account.id == squatter.id
    assert [(i.provider, i.subject) for i in victim.account.identities] == [("google", "g-1")]
    assert (
        await db.scalar(select(PasswordCredential).where(PasswordCredential.account_id == squatter.id))
        is None
    )
    assert await db.get(Identity, relay.id) is None
    with pytest.raises(Unauthorized):
        await accounts.authenticate_password(db, email="victim@example.com", password=DEFAULT_PASSWORD)
    family = await db.get(RefreshTokenFamily, uuid.UUID(_family_of(squatter_session)))
    assert family is not None and family.revoked_at is not None
    logged = await event_types(db, squatter.id)
    assert {"account.secured", "identity.unlinked", "identity.linked"} <= set(logged)
    mails = (
        await db.scalars(select(OutboundMail.template).where(OutboundMail.to == "victim@example.com"))
    ).all()
    assert "account_secured" in mails


async def test_verified_password_account_links_with_a_provider(db: AsyncSession) -> None:
    owner = await make_account(db, email="pat@example.com")
    [password_identity] = owner.identities
    password_identity.email_verified = True
    await db.commit()
    via_google = await identities.sign_in_with_identity(db, google())
    assert not via_google.created and via_google.account.id == owner.id
    assert (
        await accounts.authenticate_password(db, email="pat@example.com", password=DEFAULT_PASSWORD)
    ).id == (owner.id)


async def test_unverified_or_relay_identity_leaves_the_password_alone(db: AsyncSession) -> None:
    owner = await make_account(db, email="pat@example.com")
    await identities.sign_in_with_identity(db, google(verified=False))
    await identities.sign_in_with_identity(db, apple(email="pat@example.com", relay=True))
    await db.commit()
    assert (
        await accounts.authenticate_password(db, email="pat@example.com", password=DEFAULT_PASSWORD)
    ).id == owner.id


async def test_password_registration_is_refused_for_an_address_a_provider_proved(db: AsyncSession) -> None:
    owner = await identities.sign_in_with_identity(db, google())
    await db.commit()
    with pytest.raises(Conflict) as refused:
        await make_account(db, email="PAT@example.com")
    assert refused.value.code == "email_taken"
    await db.rollback()
    again = await identities.sign_in_with_identity(db, google())
    assert again.account.id == owner.account.id


async def test_apple_name_is_kept_and_never_erased(db: AsyncSession) -> None:
    first = await identities.sign_in_with_identity(db, apple(), name="  Pat   Person ")
    again = await identities.sign_in_with_identity(db, apple(), name=None)
    assert again.account.id == first.account.id
    assert again.account.name == "Pat Person"
    assert again.account.identities[0].name == "Pat Person"


async def test_explicit_link_and_its_conflicts(db: AsyncSession) -> None:
    mine = await make_account(db, email="me@example.com")
    identity, created = await identities.link_identity(db, mine, google(email="other@example.com"))
    assert created and identity.account_id == mine.id
    _, created_again = await identities.link_identity(db, mine, google(email="other@example.com"))
    assert not created_again
    someone_else = await make_account(db, email="someone@example.com")
    with pytest.raises(Conflict) as caught:
        await identities.link_identity(db, someone_else, google(email="other@example.com"))
    assert caught.value.code == "identity_already_linked"
    assert "identity.linked" in await event_types(db, mine.id)


async def test_unlink_never_removes_the_last_way_in(db: AsyncSession) -> None:
    account = await make_account(db, email="me@example.com")
    [password_identity] = account.identities
    with pytest.raises(Conflict) as caught:
        await identities.unlink_identity(db, account, password_identity.id)
    assert caught.value.code == "last_identity"
    google_identity, _ = await identities.link_identity(db, account, google(email="me@gmail.com"))
    await identities.unlink_identity(db, account, password_identity.id)
    with pytest.raises(Conflict):
        await identities.unlink_identity(db, account, google_identity.id)
    assert "identity.unlinked" in await event_types(db, account.id)


async def test_a_disabled_password_is_not_a_way_in(db: AsyncSession) -> None:
    squatter = await make_account(db, email="pat@example.com")
    linked, _ = await identities.link_identity(
        db, squatter, apple(sub="a-squat", email="s@privaterelay.appleid.com", relay=True)
    )
    # Google proves pat@ for another account that holds the identity already: the squatter's password stops.
    elsewhere = await make_account(db, email="other@example.com")
    await identities.link_identity(db, elsewhere, google())
    with pytest.raises(Conflict):
        await identities.unlink_identity(db, squatter, linked.id)


async def test_unlink_of_another_accounts_identity_is_not_found(db: AsyncSession) -> None:
    mine = await make_account(db, email="me@example.com")
    theirs = await identities.sign_in_with_identity(db, google())
    with pytest.raises(NotFound):
        await identities.unlink_identity(db, mine, theirs.account.identities[0].id)


async def test_revoked_identity_returns_only_with_a_newer_token(db: AsyncSession) -> None:
    from datetime import UTC, datetime

    signed_in = await identities.sign_in_with_identity(db, apple(issued_at=time.time()))
    identity = await db.scalar(select(Identity).where(Identity.subject == "a-1"))
    assert identity is not None
    identity.revoked_at = datetime.now(UTC)
    await db.flush()
    with pytest.raises(Unauthorized) as caught:
        await identities.sign_in_with_identity(db, apple(issued_at=time.time() - 30))
    assert caught.value.code == "identity_revoked"
    back = await identities.sign_in_with_identity(db, apple(issued_at=time.time() + 5))
    assert back.account.id == signed_in.account.id and identity.revoked_at is None


async def test_address_is_proven_only_by_verified_provider_identities(db: AsyncSession) -> None:
    await make_account(db, email="pw@example.com")
    await identities.sign_in_with_identity(
        db, google(sub="g-u", email="unverified@example.com", verified=False)
    )
    await identities.sign_in_with_identity(db, google(sub="g-v", email="verified@example.com"))
    assert await accounts.account_proving_address(db, "Verified@Example.com") is not None
    assert await accounts.account_proving_address(db, "unverified@example.com") is None
    assert await accounts.account_proving_address(db, "pw@example.com") is None
