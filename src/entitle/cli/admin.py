"""`entitle admin add|remove|list`: who may open the dashboard."""

from __future__ import annotations

import typer

from entitle.cli import admin_app
from entitle.cli.common import os_user, run_job
from entitle.context import AppContext
from entitle.services.identity import operators


@admin_app.command("add")
def add(account: str = typer.Argument(..., help="The account's email address, id or external id.")) -> None:
    """Let an account open the dashboard (it signs in at /account/sign-in, then goes to /admin)."""

    async def job(context: AppContext) -> None:
        async with context.database.transaction() as db:
            found, added = await operators.add_operator(db, account, added_by=f"cli:{os_user()}")
        who = found.email or str(found.id)
        url = context.settings.public_url.rstrip("/") + "/admin"
        typer.echo(f"{who} {'is now' if added else 'was already'} an operator: {url}")

    run_job(job)


@admin_app.command("remove")
def remove(
    account: str = typer.Argument(..., help="The account's email address, id or external id."),
) -> None:
    """Take away an account's access to the dashboard."""

    async def job(context: AppContext) -> None:
        async with context.database.transaction() as db:
            found = await operators.remove_operator(db, account, removed_by=f"cli:{os_user()}")
        typer.echo(f"{found.email or found.id} is no longer an operator")

    run_job(job)


@admin_app.command("list")
def list_command() -> None:
    """The operators, oldest first."""

    async def job(context: AppContext) -> None:
        async with context.database.read_sessionmaker() as db:
            rows = await operators.list_operators(db)
        if not rows:
            typer.echo("no operators yet; add one with `entitle admin add EMAIL`")
        for found, operator in rows:
            added = f"added {operator.added_at:%Y-%m-%d} by {operator.added_by}"
            typer.echo(f"{found.email or found.id}\t{added}")

    run_job(job)
