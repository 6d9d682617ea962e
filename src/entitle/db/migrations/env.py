"""Alembic environment: runs migrations over the async engine, on SQLite in batch mode."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

import entitle.models  # noqa: F401  (registers every table on Base.metadata)
from entitle.db.base import Base
from entitle.db.engine import normalize_database_url

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    # Alembic owns the transactions, one per migration, so a migration that must run outside one (an
    # index built CONCURRENTLY on a large table) can step out of it; SQLAlchemy may have begun one.
    if connection.in_transaction():
        connection.commit()
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = normalize_database_url(config.get_main_option("sqlalchemy.url") or "")
    asyncio.run(_run_async(url))


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
