"""`entitle serve`, `entitle migrate`, `entitle worker`."""

from __future__ import annotations

import asyncio
import logging

import typer
import uvicorn

from entitle.cli import app
from entitle.cli.common import console, fail, load_context, load_settings
from entitle.db.engine import Database
from entitle.db.migrate import is_up_to_date, run_upgrade
from entitle.web.server import uvicorn_options


@app.command()
def migrate() -> None:
    """Apply pending database migrations."""
    settings = load_settings()
    run_upgrade(settings.database_url)
    console.print("database is up to date")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    worker: bool = typer.Option(
        True,
        help="Also process provider events and do the worker's background work in this process; with "
        "--no-worker, events are stored and acknowledged here and processed by `entitle worker` processes.",
    ),
    demo: bool = typer.Option(False, help="Create a demo account with sample data (not in production)."),
) -> None:
    """Run the HTTP API (applies pending migrations on the embedded SQLite database)."""
    from entitle.app import create_app

    settings = load_settings()
    if settings.uses_embedded_database:
        run_upgrade(settings.database_url)
    elif not asyncio.run(_up_to_date(settings.database_url)):
        fail("the database has pending migrations; run `entitle migrate` first")
    if demo:
        if not settings.is_development:
            fail("--demo creates a known password; it is refused in production")
        from entitle.cli.demo import DEMO_EMAIL, DEMO_PASSWORD, seed_demo_account

        if asyncio.run(seed_demo_account(settings)):
            console.print(f"created the demo account {DEMO_EMAIL} (password: {DEMO_PASSWORD})")
        else:
            console.print(f"demo account: {DEMO_EMAIL} (password: {DEMO_PASSWORD})")
    if "public_url" not in settings.model_fields_set:
        # Every URL entitle prints or answers with (portal links, Stripe return URLs, the webhook URLs
        # `doctor` prints) is built on the public URL: without one set, it is where this server listens.
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        settings = settings.model_copy(update={"public_url": f"http://{shown}:{port}"})
    context = load_context(settings, process_locally=worker)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    console.print(f"entitle on http://{host}:{port}  (API docs at /docs, catalog at /v1/catalog)")
    uvicorn.run(
        create_app(context=context, run_worker=worker),
        host=host,
        port=port,
        log_level="info",
        **uvicorn_options(settings),
    )


@app.command(name="worker")
def worker_command(
    once: bool = typer.Option(False, help="Process what is due once, then exit."),
) -> None:
    """Process provider events (woken at once on PostgreSQL), retry failed ones, write answers that time
    changed and send outbound webhooks; run one or more beside the API."""
    from entitle.app import run_background_work

    settings = load_settings()
    context = load_context(settings)

    async def _main() -> None:
        try:
            done = await run_background_work(context, once=once)
            console.print(f"handled {done} due item(s)")
        finally:
            await context.aclose()

    asyncio.run(_main())


async def _up_to_date(url: str) -> bool:
    database = Database(url)
    try:
        return await is_up_to_date(database)
    finally:
        await database.dispose()
