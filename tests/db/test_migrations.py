"""The shipped migrations build exactly the schema the models describe, and can be walked back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect

import entitle.models  # noqa: F401  (every table on Base.metadata)
from entitle.db.base import Base
from entitle.db.engine import Database
from entitle.db.migrate import alembic_config


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(database_url: str) -> None:
    database = Database(database_url)
    try:
        async with database.engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await database.dispose()
    assert differences == []


def test_migrations_go_down_to_nothing_and_up_again(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'walk.db'}"
    config = alembic_config(url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    engine = create_engine(f"sqlite:///{tmp_path / 'walk.db'}")
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    command.upgrade(config, "head")
    engine = create_engine(f"sqlite:///{tmp_path / 'walk.db'}")
    try:
        assert {"accounts", "subscriptions", "provider_events", "stripe_customers"} <= set(
            inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()


def test_old_endpoint_secrets_keep_their_key_in_the_standard_webhooks_form(tmp_path: Path) -> None:
    """0007: a secret used as a raw HMAC key becomes `whsec_` + base64 of those same bytes."""
    import base64
    import hashlib
    import hmac
    import sqlite3
    import uuid
    from datetime import UTC, datetime

    from standardwebhooks import Webhook

    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0004_appstore")
    old_secret = "whsec_" + "Zm9v-bar_baz" * 3
    endpoint_id = uuid.uuid4()
    with sqlite3.connect(tmp_path / "old.db") as connection:
        connection.execute(
            "INSERT INTO webhook_endpoints (id, url, secret, event_types, created_at) VALUES (?, ?, ?, ?, ?)",
            (endpoint_id.hex, "https://hooks.example.com", old_secret, "[]", "2026-01-01 00:00:00.000000"),
        )
    command.upgrade(config, "head")
    with sqlite3.connect(tmp_path / "old.db") as connection:
        [(secret,)] = connection.execute("SELECT secret FROM webhook_endpoints").fetchall()
    assert secret == "whsec_" + base64.b64encode(old_secret.encode()).decode()
    moment = datetime(2026, 12, 1, tzinfo=UTC)
    signed = Webhook(secret).sign("msg_1", moment, '{"a":1}').split(",", 1)[1]
    expected = hmac.new(
        old_secret.encode(), f"msg_1.{int(moment.timestamp())}.".encode() + b'{"a":1}', hashlib.sha256
    )
    assert base64.b64decode(signed) == expected.digest()
    command.downgrade(config, "0004_appstore")
    with sqlite3.connect(tmp_path / "old.db") as connection:
        [(restored,)] = connection.execute("SELECT secret FROM webhook_endpoints").fetchall()
    assert restored == old_secret
