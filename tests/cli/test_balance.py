"""`entitle balance`: an operator's credit or debit, on the ledger with its reason and who ran it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from entitle.cli import app
from entitle.context import build_context
from entitle.core.models.events import AccountEvent
from entitle.core.models.purchases import BalanceTransaction
from entitle.services.access.entitlements import read_entitlements
from tests.conftest import _empty_all_tables, make_settings
from tests.factories import make_account

runner = CliRunner()


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The command's environment over an emptied test database holding one account; yields its id."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENTITLE_ENVIRONMENT", "test")
    monkeypatch.setenv("ENTITLE_DATABASE_URL", database_url)
    monkeypatch.setenv("ENTITLE_JWT_PRIVATE_KEY_PATH", str(tmp_path / "key.pem"))
    monkeypatch.delenv("ENTITLE_CATALOG", raising=False)

    async def setup() -> str:
        context = build_context(make_settings(database_url, jwt_private_key_path=tmp_path / "key.pem"))
        try:
            await _empty_all_tables(context.database)
            async with context.database.sessionmaker() as db:
                return str((await make_account(db, email="support.me@example.com")).id)
        finally:
            await context.aclose()

    yield asyncio.run(setup())


def stored(
    database_url: str, tmp_path: Path, account_id: str
) -> tuple[dict[str, int], list[BalanceTransaction], list[AccountEvent]]:
    """The answer's balances, the ledger and the balance events, read back as the API reads them."""

    async def read() -> tuple[dict[str, int], list[BalanceTransaction], list[AccountEvent]]:
        context = build_context(make_settings(database_url, jwt_private_key_path=tmp_path / "key.pem"))
        try:
            async with context.database.sessionmaker() as db:
                body = await read_entitlements(db, uuid.UUID(account_id))
                rows = list(
                    await db.scalars(select(BalanceTransaction).order_by(BalanceTransaction.created_at))
                )
                logged = list(
                    await db.scalars(
                        select(AccountEvent)
                        .where(AccountEvent.type == "balance.changed")
                        .order_by(AccountEvent.created_at)
                    )
                )
                return body["balances"], rows, logged
        finally:
            await context.aclose()

    return asyncio.run(read())


def test_credit_then_debit_with_the_reason_on_record(env: str, database_url: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["balance", "Support.Me@example.com", "credits", "100", "--reason", "T-1"])
    assert result.exit_code == 0, result.output
    assert (
        result.output.strip()
        == "credited 100 credits to support.me@example.com: the credits balance is now 100"
    )

    result = runner.invoke(app, ["balance", "support.me@example.com", "credits", "-30", "--reason", "T-2"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("the credits balance is now 70")

    balances, rows, logged = stored(database_url, tmp_path, env)
    assert balances == {"credits": 70}
    assert [(row.amount, row.reason) for row in rows] == [(100, "T-1"), (-30, "T-2")]
    assert all(row.source.startswith("operator:cli:") for row in rows)
    assert [(event.data["reason"], event.data["source"]) for event in logged] == [
        (row.reason, row.source) for row in rows
    ]


@pytest.mark.parametrize(
    ("arguments", "says"),
    [
        (["support.me@example.com", "credits", "10"], "--reason"),
        (["support.me@example.com", "credits", "10", "--reason", "  "], "--reason"),
        (["support.me@example.com", "credits", "ten", "--reason", "x"], "not a whole number"),
        (["support.me@example.com", "credits", "0", "--reason", "x"], "non-zero"),
        (["support.me@example.com", "credits", "-5", "--reason", "x"], "below zero"),
        (["support.me@example.com", "gold", "5", "--reason", "x"], "no currency 'gold'"),
        (["nobody@example.com", "credits", "5", "--reason", "x"], "No account"),
    ],
)
def test_mistakes_are_one_sentence_and_change_nothing(
    env: str, database_url: str, tmp_path: Path, arguments: list[str], says: str
) -> None:
    result = runner.invoke(app, ["balance", *arguments])
    assert result.exit_code != 0
    assert says in result.output
    assert "Traceback" not in result.output
    balances, rows, _logged = stored(database_url, tmp_path, env)
    assert balances == {"credits": 0} and rows == []
