"""Apply Alembic migrations programmatically; the migration scripts ship inside the package."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from entitle.db.engine import Database, normalize_database_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalize_database_url(url))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` up to `revision` (blocking; call from sync code or a thread)."""
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(database: Database, revision: str = "head") -> None:
    config = alembic_config(database.url)

    def _run(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    # A plain connection, not `begin()`: Alembic runs each migration in a transaction of its own.
    async with database.engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()


async def is_up_to_date(database: Database) -> bool:
    head = ScriptDirectory.from_config(alembic_config(database.url)).get_current_head()

    def _current(connection: Connection) -> tuple[str, ...]:
        return MigrationContext.configure(connection).get_current_heads()

    async with database.engine.connect() as connection:
        current = await connection.run_sync(_current)
    return current == (head,)


def run_upgrade(url: str) -> None:
    """Blocking entry point for the CLI."""

    async def _main() -> None:
        database = Database(url)
        try:
            await upgrade_async(database)
        finally:
            await database.dispose()

    asyncio.run(_main())
