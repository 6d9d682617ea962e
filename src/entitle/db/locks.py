"""Serializing work on one key (a customer, an account, a purchase).

Within a process an asyncio lock per key; across processes on PostgreSQL a transaction-scoped
advisory lock, released when the transaction ends. SQLite needs no second lock: it has one writer.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


class KeyedLocks:
    """One asyncio lock per key, forgotten once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[object, asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, key: object) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock


def advisory_key(name: str) -> int:
    """A signed 64-bit PostgreSQL advisory-lock key derived from a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


async def advisory_xact_lock(db: AsyncSession, name: str) -> None:
    """Hold `name` until the session's transaction ends (PostgreSQL; nothing on SQLite)."""
    if db.get_bind().dialect.name == "postgresql":
        await db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_key(name)})
