"""`entitle import accounts FILE`: the users of an app that already has them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from entitle.cli import app
from entitle.cli.common import console, fail, run_job
from entitle.context import AppContext
from entitle.services.imports import ImportSummary, LineOutcome, LineRefused, import_line

import_app = typer.Typer(help="Bring in data from an existing app.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("accounts")
def import_accounts(
    file: Annotated[
        Path, typer.Argument(help="JSON Lines: one person per line (README, 'Migrating users').")
    ],
) -> None:
    """Import accounts with their password hashes, Apple and Google subjects and Stripe customers."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}")
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())

    async def _import(context: AppContext) -> ImportSummary:
        summary = ImportSummary()
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("accounts", total=len(lines))
            for number, text in enumerate(lines, start=1):
                progress.update(task, advance=1)
                if not text.strip():
                    continue
                try:
                    outcome = await import_line(context.database, text)
                except LineRefused as exc:
                    summary.failures.append((number, exc.message))
                    outcome = LineOutcome.FAILED
                summary.counts[outcome] += 1
        return summary

    summary = run_job(_import)
    counts = summary.counts
    typer.echo(
        f"{counts[LineOutcome.CREATED]} created, {counts[LineOutcome.UPDATED]} updated, "
        f"{counts[LineOutcome.UNCHANGED]} unchanged, {counts[LineOutcome.FAILED]} failed"
    )
    for number, reason in summary.failures:
        typer.echo(f"  line {number}: {reason}", err=True)
    if summary.failures:
        fail(f"{len(summary.failures)} line(s) were not imported; fix them and run the command again")
