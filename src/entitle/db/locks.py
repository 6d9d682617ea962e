"""Serializing work on one key (a customer, an account, a purchase).

Within a process an asyncio lock per key; across processes on PostgreSQL a transaction-scoped
advisory lock, released when the transaction ends. SQLite needs no second lock: it has one writer.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import SessionTransaction


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


# SQLite's own wait for the write lock (db.engine sets the busy timeout to 30 s).
SQLITE_BUSY_TIMEOUT = 30.0
# One per SQLite engine: the process's writers take turns here instead of in SQLite's busy handler.
_sqlite_writers: weakref.WeakKeyDictionary[object, asyncio.Lock] = weakref.WeakKeyDictionary()


async def sqlite_write_turn(db: AsyncSession) -> None:
    """On SQLite, wait for this process's other writers' transactions to end before this one writes,
    and hold the turn until this session's transaction ends; nothing on PostgreSQL.

    SQLite has one writer at a time, and a connection that finds the write lock taken polls for it in
    the busy handler, sleeping longer after each miss (up to 100 ms): under many concurrent writers
    most of the time goes to sleeping. Queued here, each writer starts the moment the last one ends.
    A session that already holds SQLite's write lock (it wrote before) skips the queue: waiting here
    for a writer that waits for it would stall both for the busy timeout."""
    bind = db.get_bind()
    if bind.dialect.name != "sqlite":
        return
    connection = await db.connection()
    raw = await connection.get_raw_connection()
    if getattr(raw.driver_connection, "in_transaction", False):
        return
    lock = _sqlite_writers.get(bind)
    if lock is None:
        lock = _sqlite_writers[bind] = asyncio.Lock()
    try:
        # As long as SQLite itself would wait; then on without a turn, and SQLite decides.
        await asyncio.wait_for(lock.acquire(), timeout=SQLITE_BUSY_TIMEOUT)
    except TimeoutError:
        return
    released = False

    def release(_session: object, transaction: SessionTransaction) -> None:
        nonlocal released
        if transaction.parent is None and not released:
            released = True
            lock.release()

    event.listen(db.sync_session, "after_transaction_end", release)
