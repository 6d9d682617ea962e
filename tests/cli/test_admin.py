"""`entitle admin add|list|remove`: making operators from the command line."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from entitle.cli import app
from entitle.context import build_context
from entitle.core.models.events import AccountEvent
from entitle.services.identity.operators import OPERATOR_ACTION, is_operator
from tests.cli.test_grant import env  # noqa: F401  (the fixture: one account, support.me@example.com)
from tests.conftest import make_settings

runner = CliRunner()


def operator_state(database_url: str, tmp_path: Path, account_id: str) -> tuple[bool, list[str]]:
    async def read() -> tuple[bool, list[str]]:
        context = build_context(make_settings(database_url, jwt_private_key_path=tmp_path / "key.pem"))
        try:
            async with context.database.sessionmaker() as db:
                events = await db.scalars(
                    select(AccountEvent).where(
                        AccountEvent.account_id == uuid.UUID(account_id), AccountEvent.type == OPERATOR_ACTION
                    )
                )
                return await is_operator(db, uuid.UUID(account_id)), [e.data["action"] for e in events]
        finally:
            await context.aclose()

    return asyncio.run(read())


def test_add_list_and_remove_an_operator(env: str, database_url: str, tmp_path: Path) -> None:  # noqa: F811
    added = runner.invoke(app, ["admin", "add", "Support.Me@example.com"])
    assert added.exit_code == 0, added.output
    assert added.output.startswith("support.me@example.com is now an operator: ") and "/admin" in added.output
    again = runner.invoke(app, ["admin", "add", "support.me@example.com"])
    assert "was already an operator" in again.output
    listed = runner.invoke(app, ["admin", "list"])
    assert listed.output.startswith("support.me@example.com\tadded ") and "by cli:" in listed.output
    assert operator_state(database_url, tmp_path, env) == (True, ["operator.added"])

    removed = runner.invoke(app, ["admin", "remove", env])
    assert removed.exit_code == 0, removed.output
    assert operator_state(database_url, tmp_path, env) == (False, ["operator.added", "operator.removed"])


def test_an_unknown_address_is_one_clear_sentence(env: str) -> None:  # noqa: F811
    result = runner.invoke(app, ["admin", "add", "nobody@example.com"])
    assert result.exit_code == 1
    assert "No account has the id, email or external id 'nobody@example.com'" in result.output
