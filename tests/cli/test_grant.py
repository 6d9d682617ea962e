from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from entitle.cli import app
from entitle.context import build_context
from entitle.core.models.accounts import Account
from entitle.core.models.entitlements import PromotionalGrant
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
) -> tuple[dict[str, Any], list[PromotionalGrant]]:
    """The account's `pro` answer and every grant, read back the way the API reads them."""

    async def read() -> tuple[dict[str, Any], list[PromotionalGrant]]:
        context = build_context(make_settings(database_url, jwt_private_key_path=tmp_path / "key.pem"))
        try:
            async with context.database.sessionmaker() as db:
                body = await read_entitlements(db, uuid.UUID(account_id))
                return body["entitlements"]["pro"], list(await db.scalars(select(PromotionalGrant)))
        finally:
            await context.aclose()

    return asyncio.run(read())


def test_grant_by_email_for_some_days_then_revoke(env: str, database_url: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["grant", "Support.Me@example.com", "pro", "--days", "30", "--reason", "T-1"])

    assert result.exit_code == 0, result.output
    assert result.output.startswith("granted pro to support.me@example.com until ")
    pro, [grant] = stored(database_url, tmp_path, env)
    assert pro["active"] and pro["store"] == "promotional"
    assert grant.reason == "T-1" and grant.created_by.startswith("cli:")

    result = runner.invoke(app, ["grant", "--revoke", str(grant.id)])

    assert result.exit_code == 0, result.output
    pro, [grant] = stored(database_url, tmp_path, env)
    assert not pro["active"] and grant.revoked_at is not None


def test_grant_by_external_id(env: str, database_url: str, tmp_path: Path) -> None:
    async def give_external_id() -> None:
        context = build_context(make_settings(database_url, jwt_private_key_path=tmp_path / "key.pem"))
        try:
            async with context.database.transaction() as db:
                account = await db.get(Account, uuid.UUID(env))
                assert account is not None
                account.external_id = "app-user-77"
        finally:
            await context.aclose()

    asyncio.run(give_external_id())
    result = runner.invoke(app, ["grant", "app-user-77", "pro", "--days", "3"])

    assert result.exit_code == 0, result.output
    pro, _ = stored(database_url, tmp_path, env)
    assert pro["active"]


def test_grant_until_a_date_lasts_through_that_day(env: str, database_url: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["grant", env, "pro", "--until", "2099-01-31"])

    assert result.exit_code == 0, result.output
    assert "until 2099-02-01T00:00:00+00:00" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["grant", "support.me@example.com", "platinum", "--days", "3"], "The catalog has no entitlement"),
        (["grant", "support.me@example.com", "pro", "--until", "2001-01-01"], "expires_at is in the past"),
        (["grant", "support.me@example.com", "pro", "--until", "soon"], "is not a date"),
        (["grant", "support.me@example.com", "pro", "--until", "9999-12-31"], "must fall between"),
        (
            ["grant", "support.me@example.com", "pro", "--until", "9999-12-31T23:00:00-14:00"],
            "must fall between",
        ),
        (
            ["grant", "support.me@example.com", "pro", "--until", "0001-01-01T00:00:00+14:00"],
            "must fall between",
        ),
        (
            ["grant", "nobody@example.com", "pro", "--days", "3"],
            "No account has the id, email or external id",
        ),
        (["grant", "support.me@example.com", "pro"], "exactly one of --until DATE and --days N"),
        (["grant", "support.me@example.com", "pro", "--days", "1", "--until", "2099-01-01"], "exactly one"),
        (["grant", "--revoke", str(uuid.UUID(int=7))], "No grant has this id"),
        (["grant", "--revoke", "nope"], "is not a grant id"),
        (["grant", "pro"], "name the account"),
    ],
)
def test_mistakes_end_with_one_line_and_exit_1(env: str, arguments: list[str], message: str) -> None:
    result = runner.invoke(app, arguments)

    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_serve_refuses_a_bad_catalog_with_one_sentence(
    env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[entitlements.pro]\n[products.p]\nname = "P"\nentitlements = ["max"]\n')
    monkeypatch.setenv("ENTITLE_CATALOG", str(catalog))

    result = runner.invoke(app, ["serve", "--port", "1"])

    assert result.exit_code == 1
    assert (
        result.output.strip() == f'entitle: Catalog {catalog}: product "p" grants unknown entitlement "max".'
    )
