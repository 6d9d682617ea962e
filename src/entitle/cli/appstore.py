"""`entitle sync appstore`: refresh known App Store subscriptions from Apple, back-fill notifications."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from entitle.cli import sync_app
from entitle.cli.common import console, fail, load_context, load_settings, run_job
from entitle.context import AppContext
from entitle.services.delivery.alerts import alerter


@sync_app.command(name="appstore")
def sync_appstore(
    history_days: int = typer.Option(
        30, min=1, max=180, help="Back-fill notifications Apple sent in the last N days (Apple keeps 180)."
    ),
) -> None:
    """Refresh App Store subscriptions (Get All Subscription Statuses), back-fill missed notifications
    (Get Notification History) and set the owner's app account token on purchases made outside the app."""
    from entitle.providers.appstore import sync
    from entitle.providers.appstore.provider import appstore_provider

    settings = load_settings()
    context = load_context(settings)
    provider = appstore_provider(context.providers)
    if provider.api is None:
        fail(
            "App Store Server API credentials are not configured: set ENTITLE_APPLE_ISSUER_ID, "
            "ENTITLE_APPLE_KEY_ID and ENTITLE_APPLE_PRIVATE_KEY_PATH"
        )

    async def ingest(body: bytes) -> bool:
        # Back-filled notifications take the webhook's own way in, so duplicates collapse on their uuid.
        return (await context.pipeline.ingest(provider, body, {})).created

    async def _sync(_context: AppContext) -> sync.SyncSummary:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            tasks: dict[str, TaskID] = {}

            def on_progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    label = {
                        "refresh": "refreshing subscriptions",
                        "purchases": "refreshing one-time purchases",
                    }.get(stage, "back-filling notifications")
                    tasks[stage] = progress.add_task(label, total=total)
                progress.update(tasks[stage], completed=done, total=total)

            summary = await sync.sync_all(
                provider, ingest=ingest, history_days=history_days, on_progress=on_progress
            )
            await context.pipeline.wait_idle()
        if summary.changed or summary.purchases_changed or summary.notifications_new:
            # Notifications should have told us already: what the sync found is what was missed.
            detail = (
                f"{summary.changed} subscription(s) changed, "
                f"{summary.purchases_changed} one-time purchase(s) changed, "
                f"{summary.notifications_new} missed notification(s)"
            )
            await alerter(_context).sync_drift("app_store", detail)
        return summary

    summary = run_job(_sync, context)
    table = Table(title="App Store sync", show_header=False)
    table.add_row("subscriptions refreshed", str(summary.refreshed))
    table.add_row("subscriptions changed", str(summary.changed))
    table.add_row(
        "one-time purchases refreshed / changed",
        f"{summary.purchases_refreshed} / {summary.purchases_changed}",
    )
    table.add_row("notifications seen / new", f"{summary.notifications_seen} / {summary.notifications_new}")
    table.add_row("notifications refused", str(summary.notifications_invalid))
    table.add_row("app account tokens set", str(summary.tokens_set))
    table.add_row("rate-limited answers (retried)", str(summary.rate_limited))
    table.add_row("failures", ", ".join(summary.failed) or "none")
    console.print(table)
    if summary.failed:
        raise typer.Exit(code=1)
