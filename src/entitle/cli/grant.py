"""`entitle grant`: promotional grants for support staff, without going through the HTTP API."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta

import typer

from entitle.cli import app
from entitle.cli.common import fail, os_user, run_job
from entitle.client_input import WINDOW_TEXT, in_window
from entitle.context import AppContext
from entitle.db.types import utcnow
from entitle.services.access import grants


def parse_until(value: str) -> datetime:
    """A date means through the end of that day (UTC); a time without a zone is taken as UTC."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        pass
    else:
        if not in_window(day):
            fail(_OUT_OF_WINDOW.format(value))
        return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--until {value!r} is not a date (2030-01-31) or an ISO 8601 time (2030-01-31T12:00:00Z)")
    if not in_window(moment):
        fail(_OUT_OF_WINDOW.format(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_OUT_OF_WINDOW = f"--until {{!r}} must fall between {WINDOW_TEXT}"


@app.command(name="grant")
def grant_command(
    account: str | None = typer.Argument(None, help="The account's id, email address or external id."),
    entitlement: str | None = typer.Argument(None, help="The entitlement to grant, as named in the catalog."),
    until: str | None = typer.Option(None, help="Last day (2030-01-31, through its end, UTC) or a time."),
    days: int | None = typer.Option(None, min=1, max=36_500, help="Or: grant for this many days from now."),
    reason: str | None = typer.Option(None, help="Why, for the account's history (e.g. a support ticket)."),
    revoke: str | None = typer.Option(None, metavar="GRANT_ID", help="Revoke this grant instead."),
) -> None:
    """Grant an entitlement to an account for a while, or revoke a grant (`--revoke GRANT_ID`)."""
    if revoke is not None:
        if account or entitlement or until or days:
            fail("--revoke takes only the grant id")
        _run(lambda context: _revoke(context, revoke))
        return
    if not account or not entitlement:
        fail("name the account (id or email) and the entitlement, e.g. `entitle grant a@b.c pro --days 30`")
    if (until is None) == (days is None):
        fail("give exactly one of --until DATE and --days N")
    expires_at = parse_until(until) if until is not None else utcnow() + timedelta(days=days or 0)
    _run(lambda context: _grant(context, account, entitlement, expires_at, reason))


async def _grant(
    context: AppContext, who: str, entitlement: str, expires_at: datetime, reason: str | None
) -> None:
    async with context.database.transaction() as db:
        account = await grants.find_account(db, who)
        grant = await grants.create_grant(
            db,
            account_id=account.id,
            entitlement=entitlement,
            expires_at=expires_at,
            reason=reason,
            created_by=f"cli:{os_user()}",
        )
    typer.echo(
        f"granted {grant.entitlement} to {account.email or account.id} until "
        f"{grant.expires_at.isoformat()} (grant {grant.id})"
    )


async def _revoke(context: AppContext, grant_id: str) -> None:
    try:
        parsed = uuid.UUID(grant_id)
    except ValueError:
        fail(f"{grant_id!r} is not a grant id")
    async with context.database.transaction() as db:
        grant = await grants.revoke_grant(db, parsed)
    typer.echo(f"revoked grant {grant.id} ({grant.entitlement} for account {grant.account_id})")


def _run(action: Callable[[AppContext], Awaitable[None]]) -> None:
    run_job(action)
