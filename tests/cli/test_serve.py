"""`entitle serve --workers N` and `entitle worker --concurrency N`: what is refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from entitle.cli import app
from entitle.cli.serve import stripe_share
from tests.conftest import make_settings

runner = CliRunner()


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENTITLE_ENVIRONMENT", "test")
    monkeypatch.setenv("ENTITLE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'entitle.db'}")
    monkeypatch.delenv("ENTITLE_CATALOG", raising=False)
    return tmp_path


def test_serve_with_several_workers_is_refused_on_sqlite_with_one_sentence(sqlite_env: Path) -> None:
    result = runner.invoke(app, ["serve", "--workers", "2", "--port", "1"])

    assert result.exit_code == 1
    message = result.output.strip()
    assert message.startswith("entitle: --workers needs PostgreSQL: SQLite lets one process write at a time")
    assert message.count(". ") == 0 and "\n" not in message
    assert not (sqlite_env / "entitle.db").exists()  # refused before migrating anything


@pytest.mark.parametrize(
    "arguments",
    [["serve", "--workers", "0"], ["worker", "--concurrency", "0"], ["worker", "--concurrency", "1001"]],
)
def test_process_counts_out_of_range_are_refused(sqlite_env: Path, arguments: list[str]) -> None:
    result = runner.invoke(app, arguments)

    assert result.exit_code == 2
    assert "Invalid value" in result.output


def test_each_api_process_paces_at_its_share_of_stripes_limit_unless_one_is_set() -> None:
    url = "sqlite+aiosqlite:///unused.db"
    test_key = make_settings(url, stripe_secret_key="sk_test_" + "x" * 24)
    live_key = make_settings(url, stripe_secret_key="sk_live_" + "x" * 24)

    assert stripe_share(test_key, 2) == 12.5
    assert stripe_share(live_key, 4) == 25.0
    # An explicit ENTITLE_STRIPE_MAX_REQUESTS_PER_SECOND is already each process's own pace.
    assert (
        stripe_share(
            make_settings(url, stripe_secret_key="sk_live_" + "x" * 24, stripe_max_requests_per_second=10), 4
        )
        is None
    )
    assert stripe_share(make_settings(url), 4) is None  # no Stripe
