"""The `entitle` command.

Commands live in small modules of this package; each registers itself on `app` (or on one of the
groups below) with one import line at the bottom of this file.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="entitle",
    help="One account and one subscription for a web app and an iPhone app.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
catalog_app = typer.Typer(help="The product catalog.", no_args_is_help=True)
sync_app = typer.Typer(help="Reconcile subscriptions with a store.", no_args_is_help=True)
admin_app = typer.Typer(
    help="Operators: the accounts that may open the dashboard at /admin.", no_args_is_help=True
)
app.add_typer(catalog_app, name="catalog")
app.add_typer(sync_app, name="sync")
app.add_typer(admin_app, name="admin")


def main() -> None:
    app()


# Command modules register themselves on import (one line each).
from entitle.cli import admin as admin_commands  # noqa: E402,F401  (issue 11)
from entitle.cli import appstore as appstore_commands  # noqa: E402,F401  (issue 5)
from entitle.cli import balance as balance_commands  # noqa: E402,F401  (issue 18)
from entitle.cli import doctor, serve  # noqa: E402,F401
from entitle.cli import grant as grant_commands  # noqa: E402,F401  (issue 3)
from entitle.cli import imports as import_commands  # noqa: E402,F401  (issue 9)
from entitle.cli import stripe as stripe_commands  # noqa: E402,F401  (issue 4)
