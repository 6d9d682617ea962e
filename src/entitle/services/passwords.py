"""Password hashing with argon2id.

`verify_or_burn` always spends the cost of one verification, even when there is no account, so the
time a login takes reveals nothing about which addresses exist.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024

# RFC 9106's second recommended option (memory-constrained): argon2id, t=3, m=64 MiB, p=4.
_hasher = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4, type=Type.ID)
_DUMMY_HASH = _hasher.hash("entitle-dummy-password-for-constant-time")


async def hash_password(password: str) -> str:
    # Tens of milliseconds of CPU with the GIL released: off the event loop, so other requests go on.
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_or_burn(password_hash: str | None, password: str) -> bool:
    """True when the password matches; with no hash, verify a dummy so timing stays the same."""
    return await asyncio.to_thread(_verify, password_hash, password)


def _verify(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
