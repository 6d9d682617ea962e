"""The profiles (format and work parameters) of the stored password hashes, which every sign-in pays for.

`passwords.verify_with_parity` runs one verification per profile on every attempt, so an unknown address
costs what an imported bcrypt-12 account does. The profiles are read from the database at the first
sign-in and again after `REFRESH` (an import run elsewhere shows up within that time; hashes replaced
at first sign-in drop out), and kept per database in this process. Reading them scans the hashes that
are not our own argon2id, which shrink as imported people sign in.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from entitle.core.models.accounts import PasswordCredential
from entitle.services.identity import passwords

REFRESH_SECONDS = 600.0
# Our own hashes, left out of the scan: their profile is always paid for.
_OWN_PREFIX = "$argon2id$v=19$m=65536,t=3,p=4$"


@dataclass
class _Known:
    profiles: tuple[passwords.HashProfile, ...] = (passwords.OWN_PROFILE,)
    read_at: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


_known: weakref.WeakKeyDictionary[AsyncEngine, _Known] = weakref.WeakKeyDictionary()


async def stored_profiles(db: AsyncSession) -> tuple[passwords.HashProfile, ...]:
    """The profiles of the usable stored hashes (ours included), at most `REFRESH_SECONDS` old."""
    engine = db.bind
    assert isinstance(engine, AsyncEngine)
    known = _known.setdefault(engine, _Known())
    if known.read_at is not None and time.monotonic() - known.read_at < REFRESH_SECONDS:
        return known.profiles
    async with known.lock:
        if known.read_at is None or time.monotonic() - known.read_at >= REFRESH_SECONDS:
            known.profiles = await _read_profiles(db)
            known.read_at = time.monotonic()
    return known.profiles


def forget_profiles_of(engine: AsyncEngine) -> None:
    """Read the profiles again at the next sign-in (after an import in this process)."""
    _known.pop(engine, None)


async def _read_profiles(db: AsyncSession) -> tuple[passwords.HashProfile, ...]:
    found = {passwords.OWN_PROFILE}
    rows = await db.stream_scalars(
        select(PasswordCredential.password_hash)
        .where(
            PasswordCredential.disabled_at.is_(None),
            ~PasswordCredential.password_hash.startswith(_OWN_PREFIX, autoescape=True),
        )
        .execution_options(yield_per=1000)
    )
    async for password_hash in rows:
        profile = passwords.profile_of(password_hash)
        if profile is not None:
            found.add(profile)
    # The dummies are made now, off the event loop, so no sign-in pays for making one.
    await asyncio.to_thread(lambda: [passwords.dummy_hash(profile) for profile in found])
    return tuple(sorted(found))
