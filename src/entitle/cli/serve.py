"""`entitle serve`, `entitle migrate`, `entitle worker`."""

from __future__ import annotations

import asyncio
import logging
import os

import typer
import uvicorn

from entitle.cli import app
from entitle.cli.common import apply_saved_settings, console, fail, load_context, load_settings
from entitle.db.engine import Database
from entitle.db.migrate import is_up_to_date, run_upgrade
from entitle.providers.stripe.client import stripe_limits
from entitle.services.delivery.pipeline import DEFAULT_CONCURRENCY
from entitle.settings import Settings
from entitle.web.server import uvicorn_options


@app.command()
def migrate() -> None:
    """Apply pending database migrations."""
    settings = load_settings()
    run_upgrade(settings.database_url)
    console.print("database is up to date")


# How many API processes `serve --workers` starts at most (each holds its own database pool).
MAX_SERVE_WORKERS = 64
MAX_WORKER_CONCURRENCY = 1000


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    worker: bool = typer.Option(
        True,
        help="Also process provider events and do the worker's background work in this process; with "
        "--no-worker, events are stored and acknowledged here and processed by `entitle worker` processes.",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        min=1,
        max=MAX_SERVE_WORKERS,
        help="API processes sharing the port (PostgreSQL only); each also does background work unless "
        "--no-worker, and each paces itself at 1/N of Stripe's limit unless "
        "ENTITLE_STRIPE_MAX_REQUESTS_PER_SECOND is set.",
    ),
    demo: bool = typer.Option(False, help="Create a demo account with sample data (not in production)."),
) -> None:
    """Run the HTTP API (applies pending migrations on the embedded SQLite database)."""
    from entitle.app import create_app

    settings = load_settings()
    if workers > 1 and settings.uses_embedded_database:
        fail(
            "--workers needs PostgreSQL: SQLite lets one process write at a time, so several API processes "
            "would only wait on each other (set ENTITLE_DATABASE_URL to a PostgreSQL database)"
        )
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
    if workers > 1:
        # The context above only proved the configuration sound; each process builds its own.
        asyncio.run(context.aclose())
        _serve_processes(settings, host=host, port=port, workers=workers, run_worker=worker)
        return
    uvicorn.run(
        create_app(context=context, run_worker=worker),
        host=host,
        port=port,
        log_level="info",
        **uvicorn_options(settings),
    )


def _serve_processes(settings: Settings, *, host: str, port: int, workers: int, run_worker: bool) -> None:
    """uvicorn's supervisor with `workers` processes on one socket, restarting any that dies.

    uvicorn spawns fresh interpreters, which build their settings from the environment: what this
    command decided beyond the environment (the public URL, each process's share of Stripe's rate
    limit) is put there for them."""
    os.environ["ENTITLE_PUBLIC_URL"] = settings.public_url
    share = stripe_share(settings, workers)
    if share is not None:
        os.environ["ENTITLE_STRIPE_MAX_REQUESTS_PER_SECOND"] = f"{share:g}"
        console.print(f"{workers} processes, each pacing Stripe requests at {share:g}/s")
    factory = "serve_process_app" if run_worker else "serve_process_app_without_worker"
    uvicorn.run(
        f"entitle.app:{factory}",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="info",
        **uvicorn_options(settings),
    )


def stripe_share(settings: Settings, workers: int) -> float | None:
    """Each of `workers` processes' pace toward Stripe when none is configured: Stripe's limit for the
    key divided among them (pacing is per process; an explicit setting is already per process)."""
    if settings.stripe_secret_key is None or settings.stripe_max_requests_per_second is not None:
        return None
    account, _endpoint = stripe_limits(settings.stripe_secret_key.get_secret_value())
    return account / workers


@app.command(name="worker")
def worker_command(
    once: bool = typer.Option(False, help="Process what is due once, then exit."),
    concurrency: int = typer.Option(
        DEFAULT_CONCURRENCY,
        "--concurrency",
        min=1,
        max=MAX_WORKER_CONCURRENCY,
        help="How many ordering keys (a Stripe customer, an App Store purchase) this worker processes "
        "at once.",
    ),
) -> None:
    """Process provider events (woken at once on PostgreSQL), retry failed ones, write answers that time
    changed and send outbound webhooks; run one or more beside the API."""
    from entitle.app import run_background_work

    settings = load_settings()
    context = load_context(settings, concurrency=concurrency)

    async def _main() -> None:
        try:
            await apply_saved_settings(context)
            if not once:
                from entitle.services.setup.runtime_settings import follow_settings

                follow_settings(context)
                context.bus.start()
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
