"""The engine and the session factory.

SQLite is the embedded default for one process; PostgreSQL is the system of record past one machine.
SQLite gets WAL and a busy timeout so the API and a worker can share the file; writes still serialize,
which is what makes per-customer serialization free there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from entitle.db.hotpath import HotPath


def normalize_database_url(url: str) -> str:
    """Accept the URLs people paste (postgres://, postgresql://, sqlite:///) and pick the async driver."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


class Database:
    def __init__(self, url: str, *, echo: bool = False, pool_size: int = 10) -> None:
        self.url = normalize_database_url(url)
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = pool_size
            # No pre-ping: it costs a round trip per checkout on every request. Connections are
            # recycled before server-side idle timeouts instead, and a dead one fails one request.
            kwargs["pool_recycle"] = 1800
        self.engine: AsyncEngine = create_async_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads that need no transaction: each statement is its own snapshot, and PostgreSQL is spared the
        # BEGIN and COMMIT round trips (SQLite opens no transaction for reads anyway).
        self.read_engine = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT") if not self.is_sqlite else self.engine
        )
        self.read_sessionmaker = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # The signed-in read, on the raw driver (see hotpath.py).
        self.hot = HotPath(self.url, pool_size=pool_size)

    def set_session_info(self, key: str, value: Any) -> None:
        """Attach `value` to every session this database makes (`session.info[key]`)."""
        for maker in (self.sessionmaker, self.read_sessionmaker):
            info = dict(maker.kw.get("info") or {})
            info[key] = value
            maker.configure(info=info)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block ends, rolls back when it raises."""
        async with self.sessionmaker() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.hot.close()
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
