"""Commands see the settings saved from /admin/setup, as the server does (`entitle doctor` here)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from entitle.cli import app
from entitle.context import build_context
from entitle.services.setup.runtime_settings import save_settings
from tests.cli.test_grant import env  # noqa: F401  (the fixture: the command's environment)
from tests.conftest import make_settings

runner = CliRunner()


def test_doctor_reports_a_saved_setting(env: str, database_url: str, tmp_path: Path) -> None:  # noqa: F811
    before = runner.invoke(app, ["doctor"])
    assert "SMTP configured" not in before.output

    async def save() -> None:
        context = build_context(make_settings(database_url, jwt_private_key_path=tmp_path / "key.pem"))
        try:
            async with context.database.transaction() as db:
                await save_settings(
                    db, context, {"smtp_url": "smtp://ops:pa55word-pa55word@mail.example.com:587"}, by="test"
                )
        finally:
            await context.aclose()

    asyncio.run(save())
    after = runner.invoke(app, ["doctor"])
    assert "SMTP configured" in after.output, after.output
    assert "pa55word-pa55word" not in after.output
