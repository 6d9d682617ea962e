"""The one query every signed-in client makes, run on the database driver itself.

`GET /v1/me/entitlements` (and every stream re-read) is one indexed lookup: the session's state and the
account's stored answer body. Through SQLAlchemy's async session, or even a bare async connection, that
lookup costs several times what the query does (pool checkout and reset, greenlet switches, result
processing; on SQLite a hop to aiosqlite's thread per step). This module owns that decision: the lookup
goes straight to the driver, on PostgreSQL through an asyncpg pool of its own (prepared statement, one
round trip) and on SQLite through a read-only `sqlite3` connection used synchronously on the event loop
(a primary-key lookup in a local file takes microseconds, and in WAL mode a reader never waits for a
writer). Everything else keeps using SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

# About 2-4 MB of log between checkpoints at a spend's few pages per commit (SQLite's own default is
# 1,000 pages).
CHECKPOINT_EVERY = 200

# Only what the read needs: whether the account and session are live, the body and its recheck time.
_SESSION_ANSWER = """
SELECT a.deleted_at, f.revoked_at, b.body, b.recheck_at
FROM refresh_token_families AS f
JOIN accounts AS a ON a.id = f.account_id
LEFT JOIN account_answers AS b ON b.account_id = f.account_id
WHERE f.id = {session} AND f.account_id = {account}
"""
# A token from the app's own identity provider has no entitle session: the account alone.
_ACCOUNT_ANSWER = """
SELECT a.deleted_at, NULL, b.body, b.recheck_at
FROM accounts AS a
LEFT JOIN account_answers AS b ON b.account_id = a.id
WHERE a.id = {account}
"""


class SessionAnswerRow:
    __slots__ = ("body", "deleted_at", "recheck_at", "revoked_at")

    def __init__(
        self,
        deleted_at: datetime | None,
        revoked_at: datetime | None,
        body: str | None,
        recheck_at: datetime | None,
    ) -> None:
        self.deleted_at = deleted_at
        self.revoked_at = revoked_at
        self.body = body
        self.recheck_at = recheck_at


class HotPath:
    """The signed-in read on the raw driver; `None` from `session_answer` means no such session."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._sqlite: sqlite3.Connection | None = None
        self._sqlite_writer: sqlite3.Connection | None = None
        self._writes = 0
        self._checkpointing: asyncio.Task[None] | None = None
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        self._sqlite_path = parsed.database if self.dialect == "sqlite" else None

    @property
    def available(self) -> bool:
        """False for an in-memory SQLite database, which only SQLAlchemy's own connection can see."""
        return self.dialect == "postgresql" or (
            self._sqlite_path not in (None, "", ":memory:") and "mode=memory" not in str(self._sqlite_path)
        )

    async def session_answer(
        self, account_id: uuid.UUID, session_id: uuid.UUID | None
    ) -> SessionAnswerRow | None:
        if self.dialect == "postgresql":
            pool = self._pool or await self._open_pool()
            if session_id is None:
                record = await pool.fetchrow(_ACCOUNT_ANSWER.format(account="$1"), account_id)
            else:
                query = _SESSION_ANSWER.format(session="$1", account="$2")
                record = await pool.fetchrow(query, session_id, account_id)
            return None if record is None else SessionAnswerRow(*record)
        params: tuple[str, ...]
        if session_id is None:
            query, params = _ACCOUNT_ANSWER.format(account="?"), (account_id.hex,)
        else:
            query = _SESSION_ANSWER.format(session="?", account="?")
            params = (session_id.hex, account_id.hex)
        row = self._sqlite_connection().execute(query, params).fetchone()
        if row is None:
            return None
        deleted_at, revoked_at, body, recheck_at = row
        return SessionAnswerRow(
            _sqlite_time(deleted_at), _sqlite_time(revoked_at), body, _sqlite_time(recheck_at)
        )

    async def postgres_pool(self) -> Any:
        """The asyncpg pool, for the other raw-driver path (the spend, services.access.fastspend)."""
        return self._pool or await self._open_pool()

    def sqlite_writer(self) -> sqlite3.Connection:
        """A writing connection for the spend's raw path, used synchronously on the event loop.

        Its busy timeout is 0 on purpose: it must never wait on the event loop's thread for a writer
        that may itself be waiting for the loop (an aiosqlite connection mid-transaction). When the write
        lock is taken, `BEGIN IMMEDIATE` fails at once and the caller takes the SQLAlchemy path."""
        if self._sqlite_writer is None:
            location = Path(str(self._sqlite_path)).resolve().as_uri()
            connection = sqlite3.connect(location, uri=True, check_same_thread=False, isolation_level=None)
            connection.execute("PRAGMA busy_timeout=0")
            # As db.engine sets them for SQLAlchemy's connections (they are per connection).
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA synchronous=NORMAL")
            # A commit that reaches the autocheckpoint size copies the log into the database and fsyncs
            # it, on the event loop's thread: every request would wait for the disk. This connection
            # leaves checkpoints to `after_sqlite_write`, which runs them on a thread of their own.
            connection.execute("PRAGMA wal_autocheckpoint=0")
            self._sqlite_writer = connection
        return self._sqlite_writer

    def after_sqlite_write(self) -> None:
        """Called after each commit of `sqlite_writer`: every CHECKPOINT_EVERY commits, a passive
        checkpoint (one that never waits for readers or writers) on a thread, one at a time."""
        self._writes += 1
        if self._writes % CHECKPOINT_EVERY or self._checkpointing is not None:
            return
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._checkpoint))
        self._checkpointing = task
        task.add_done_callback(self._checkpointed)

    def _checkpoint(self) -> None:
        location = Path(str(self._sqlite_path)).resolve().as_uri()
        with contextlib.closing(sqlite3.connect(location, uri=True, isolation_level=None)) as connection:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _checkpointed(self, task: asyncio.Task[None]) -> None:
        self._checkpointing = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("SQLite checkpoint failed: %s", task.exception())

    async def _open_pool(self) -> Any:
        async with self._pool_lock:
            if self._pool is None:
                import asyncpg  # type: ignore[import-untyped]

                url = make_url(self.url).set(drivername="postgresql")
                self._pool = await asyncpg.create_pool(
                    url.render_as_string(hide_password=False), min_size=1, max_size=self.pool_size
                )
        return self._pool

    def _sqlite_connection(self) -> sqlite3.Connection:
        if self._sqlite is None:
            # As a URI, percent-encoded, so any path works (and read-only: this connection never writes).
            location = Path(str(self._sqlite_path)).resolve().as_uri()
            connection = sqlite3.connect(
                f"{location}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
            )
            # WAL readers do not wait for writers; this only bounds a rare checkpoint hand-over.
            connection.execute("PRAGMA busy_timeout=200")
            self._sqlite = connection
        return self._sqlite

    async def close(self) -> None:
        if self._checkpointing is not None:
            with contextlib.suppress(Exception):
                await self._checkpointing
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
        if self._sqlite_writer is not None:
            self._sqlite_writer.close()
            self._sqlite_writer = None


def _sqlite_time(value: Any) -> datetime | None:
    """SQLAlchemy keeps UTC times on SQLite as naive ISO text (see db.types.UTCDateTime)."""
    if value is None:
        return None
    return datetime.fromisoformat(value).replace(tzinfo=UTC)
