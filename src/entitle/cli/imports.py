"""`entitle import accounts FILE`: the users of an app that already has them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, BinaryIO

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from entitle.cli import app
from entitle.cli.common import console, fail, run_job
from entitle.context import AppContext
from entitle.services.identity.imports import (
    MAX_LINE_BYTES,
    ImportSummary,
    LineOutcome,
    LineRefused,
    import_line,
)

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
        source = file.open("rb")
        size = file.stat().st_size
    except OSError as exc:
        fail(f"cannot read {file}: {exc}")
    columns = (TextColumn("importing"), BarColumn(), TimeRemainingColumn())

    async def _import(context: AppContext) -> ImportSummary:
        summary = ImportSummary()
        with source, Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("accounts", total=size)
            for number, line in enumerate(read_lines(source), start=1):
                progress.update(task, advance=line.size)
                if line.problem is None and not line.text.strip():
                    continue
                try:
                    if line.problem is not None:
                        raise LineRefused(line.problem)
                    outcome = await import_line(context.database, line.text)
                except LineRefused as exc:
                    summary.failures.append((number, exc.message))
                    outcome = LineOutcome.FAILED
                summary.counts[outcome] += 1
        return summary

    try:
        summary = run_job(_import)
    except OSError as exc:
        fail(f"cannot read {file}: {exc}")
    counts = summary.counts
    typer.echo(
        f"{counts[LineOutcome.CREATED]} created, {counts[LineOutcome.UPDATED]} updated, "
        f"{counts[LineOutcome.UNCHANGED]} unchanged, {counts[LineOutcome.FAILED]} failed"
    )
    for number, reason in summary.failures:
        typer.echo(f"  line {number}: {reason}", err=True)
    if summary.failures:
        fail(f"{len(summary.failures)} line(s) were not imported; fix them and run the command again")


@dataclass(frozen=True)
class SourceLine:
    # The line without its end, when it could be read.
    text: str
    # Why it could not be (too long, not UTF-8), or None.
    problem: str | None
    # Bytes it took in the file, for the progress bar.
    size: int


def read_lines(source: BinaryIO, max_bytes: int = MAX_LINE_BYTES) -> Iterator[SourceLine]:
    """The file's lines one at a time, never holding more than `max_bytes` of one: the rest of a longer
    line is read past in pieces and the line comes out as a problem, so a huge file costs no memory."""
    while True:
        raw = source.readline(max_bytes + 1)
        if not raw:
            return
        size = len(raw)
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = source.readline(max_bytes + 1)
                size += len(raw)
            yield SourceLine("", f"longer than {max_bytes} bytes; not read", size)
            continue
        try:
            yield SourceLine(raw.decode("utf-8").rstrip("\r\n"), None, size)
        except UnicodeDecodeError:
            yield SourceLine("", "not UTF-8", size)
