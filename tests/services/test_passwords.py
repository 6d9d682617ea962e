"""Password hashes: work factors are bounded, and a sign-in runs the same verifications whoever the
address belongs to (counted by the profile each verification used, never timed)."""

from __future__ import annotations

import base64
import hashlib
import logging

import bcrypt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import Identity, PasswordCredential
from entitle.errors import Unauthorized
from entitle.services.identity import accounts, passwords
from entitle.services.identity.passwords import HashProfile, hash_problem

PASSWORD = "imported passphrase 1"
B64 = "c2FsdHNhbHRzYWx0c2FsdA"
BCRYPT_TAIL = "a" * 53

# The defaults of the frameworks people import from: every one must be admitted.
REAL_WORLD = {
    "bcrypt 10 (node, Spring)": "$2b$10$" + BCRYPT_TAIL,
    "bcrypt 12 (Laravel, Rails, Devise)": "$2y$12$" + BCRYPT_TAIL,
    "bcrypt 14": "$2a$14$" + BCRYPT_TAIL,
    "argon2-cffi / PHP 64 MiB": f"$argon2id$v=19$m=65536,t=3,p=4${B64}${B64}",
    "Django argon2 100 MiB": f"$argon2id$v=19$m=102400,t=2,p=8${B64}${B64}",
    "libsodium moderate 256 MiB": f"$argon2id$v=19$m=262144,t=3,p=1${B64}${B64}",
    "Django 6.0 PBKDF2": "pbkdf2_sha256$1200000$salt$" + base64.b64encode(b"x" * 32).decode(),
    "Werkzeug 3.1 PBKDF2": "pbkdf2:sha256:1000000$salt$" + "ab" * 32,
    "Werkzeug scrypt": "scrypt:32768:8:1$salt$" + "ab" * 64,
}

HOSTILE = {
    "bcrypt cost 31": "$2b$31$" + BCRYPT_TAIL,
    "bcrypt cost 18": "$2b$18$" + BCRYPT_TAIL,
    "bcrypt cost 99, truncated": "$2b$99$",
    "argon2 garbage": "$argon2id$garbage",
    "argon2 16 GiB": f"$argon2id$v=19$m=16777216,t=3,p=4${B64}${B64}",
    "argon2 a million passes": f"$argon2id$v=19$m=65536,t=1000000,p=4${B64}${B64}",
    "PBKDF2 a billion": "pbkdf2_sha256$999999999$salt$" + base64.b64encode(b"x" * 32).decode(),
    "scrypt 8 GiB": "scrypt:1048576:64:64$salt$" + "ab" * 64,
}


@pytest.mark.parametrize("name", sorted(REAL_WORLD))
def test_every_frameworks_default_is_admitted(name: str) -> None:
    assert hash_problem(REAL_WORLD[name]) is None


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_unbounded_or_malformed_hashes_are_refused(name: str) -> None:
    assert hash_problem(HOSTILE[name]) is not None
    assert passwords.hash_format(HOSTILE[name]) is None


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[HashProfile | None]:
    """The profile of every hash a password is checked against, in order."""
    seen: list[HashProfile | None] = []
    check = passwords.check_hash

    def counting(password_hash: str, password: str) -> bool:
        seen.append(passwords.profile_of(password_hash))
        return check(password_hash, password)

    monkeypatch.setattr(passwords, "check_hash", counting)
    return seen


async def store_password(db: AsyncSession, email: str, password_hash: str) -> None:
    account = await accounts.create_account(db, email=email, via="import")
    identity = Identity(account_id=account.id, provider="email", subject=email, email=email)
    db.add(identity)
    await db.flush()
    db.add(PasswordCredential(identity_id=identity.id, account_id=account.id, password_hash=password_hash))
    await db.commit()


async def attempt(db: AsyncSession, email: str, password: str) -> bool:
    try:
        await accounts.authenticate_password(db, email=email, password=password)
    except Unauthorized:
        return False
    return True


def django_hash(password: str, iterations: int) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), b"Qx7salt0", iterations)
    return f"pbkdf2_sha256${iterations}$Qx7salt0${base64.b64encode(digest).decode()}"


async def test_every_address_costs_the_same_verifications(
    db: AsyncSession, verifications: list[HashProfile | None]
) -> None:
    await store_password(
        db, "bcrypt@example.com", bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(5)).decode()
    )
    await store_password(db, "django@example.com", django_hash(PASSWORD, 2000))
    await store_password(db, "ours@example.com", await passwords.hash_password(PASSWORD))

    runs = {}
    for email, password in [
        ("nobody@example.com", PASSWORD),
        ("bcrypt@example.com", "wrong password"),
        ("django@example.com", "wrong password"),
        ("ours@example.com", "wrong password"),
    ]:
        verifications.clear()
        assert not await attempt(db, email, password)
        runs[email] = list(verifications)
    expected = [
        HashProfile("argon2", (2, 65536, 3, 4)),
        HashProfile("bcrypt", (5,)),
        HashProfile("pbkdf2_sha256", (2000,)),
    ]
    assert all(sorted(run) == expected for run in runs.values()), runs

    # The right password still signs in, through the same list.
    verifications.clear()
    assert await attempt(db, "django@example.com", PASSWORD)
    assert sorted(verifications) == expected  # type: ignore[type-var]


async def test_a_stored_hash_over_the_bounds_is_never_verified(
    db: AsyncSession, verifications: list[HashProfile | None], caplog: pytest.LogCaptureFixture
) -> None:
    # Imported before the bounds existed: cost 18 took 27 s per wrong password.
    await store_password(db, "slow@example.com", "$2b$18$" + BCRYPT_TAIL)
    with caplog.at_level(logging.WARNING, logger="entitle.services.identity.passwords"):
        assert not await attempt(db, "slow@example.com", PASSWORD)
    # Only what an unknown address costs: our own argon2id dummy, never the cost-18 hash.
    assert verifications == [HashProfile("argon2", (2, 65536, 3, 4))]
    assert "bcrypt cost 18" in caplog.text and "reset their password" in caplog.text
