"""`entitle balance`: an operator credits or debits an account's balance, with the reason on record.

The change goes through the one ledger writer (`services.access.balances.post`), so it obeys what every
post obeys (a debit never takes the balance below zero) and is audited like a grant: the ledger row and
the `balance.changed` event carry the reason and `operator:cli:<os user>` as the source.
"""

from __future__ import annotations

import typer

from entitle.cli import app
from entitle.cli.common import fail, os_user, run_job
from entitle.context import AppContext
from entitle.services.access import balances, grants
from entitle.services.access.entitlements import entitlement_rules


def parse_amount(value: str) -> int:
    """`100` credits, `-30` (or `--` then `-30`) debits; `+100` reads as 100."""
    try:
        amount = int(value.strip())
    except ValueError:
        fail(f"AMOUNT {value!r} is not a whole number (e.g. 100 to credit, -30 to debit)")
    if amount == 0 or abs(amount) > balances.MAX_AMOUNT:
        fail(
            f"AMOUNT must be a non-zero whole number between -{balances.MAX_AMOUNT} and {balances.MAX_AMOUNT}"
        )
    return amount


# Negative amounts are arguments, not options: `entitle balance a@b.c credits -30 --reason ...`.
@app.command(name="balance", context_settings={"ignore_unknown_options": True})
def balance_command(
    account: str = typer.Argument(..., help="The account's id, email address or external id."),
    currency: str = typer.Argument(..., help="The currency, as named in the catalog (e.g. credits)."),
    amount: str = typer.Argument(..., help="Positive credits, negative debits (e.g. 100 or -30)."),
    reason: str = typer.Option("", help="Why, for the account's ledger (e.g. a support ticket). Required."),
) -> None:
    """Credit or debit an account's balance in one currency, and print the new balance."""
    if not reason.strip():
        fail("say why with --reason (e.g. --reason 'ticket 4521: refund of a failed export')")
    change = parse_amount(amount)

    async def adjust(context: AppContext) -> None:
        async with context.database.transaction() as db:
            found = await grants.find_account(db, account)
            await balances.require_currency(db, entitlement_rules(db).catalog, found.id, currency)
            posted = await balances.post(
                db,
                found.id,
                currency,
                change,
                reason=reason.strip(),
                source=f"operator:cli:{os_user()}",
            )
            who = found.email or str(found.id)
        done = f"credited {change} {currency} to" if change > 0 else f"debited {-change} {currency} from"
        typer.echo(f"{done} {who}: the {currency} balance is now {posted.balance}")

    run_job(adjust)
