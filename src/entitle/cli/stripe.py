"""`entitle catalog push` and `entitle sync stripe`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table
from sqlalchemy import bindparam, select

from entitle.cli import catalog_app, sync_app
from entitle.cli.common import console, fail, run_job
from entitle.context import AppContext
from entitle.core.models.entitlements import Subscription
from entitle.core.models.purchases import Purchase
from entitle.core.subscriptions import Store
from entitle.db.types import utcnow
from entitle.errors import EntitleError
from entitle.providers.stripe.catalog_push import PushResult, push_catalog
from entitle.providers.stripe.provider import stripe_provider
from entitle.providers.stripe.purchases import is_entitle_purchase
from entitle.services.delivery.alerts import alerter


@catalog_app.command("push")
def catalog_push() -> None:
    """Create or update Stripe products and prices from the catalog (by lookup key; safe to re-run)."""

    async def _push(context: AppContext) -> list[PushResult]:
        return await push_catalog(stripe_provider(context.providers).gateway, context.catalog)

    results = run_job(_push)
    table = Table("product", "lookup key", "action", "price")
    for result in results:
        table.add_row(result.product, result.lookup_key, result.action, result.price_id)
    console.print(table)


@dataclass
class SyncSummary:
    seen: int = 0
    changed: Counter[str] = field(default_factory=Counter)
    unchanged: int = 0
    ignored: int = 0
    # One-time purchases re-read (see `_sync_purchases`).
    purchases: int = 0
    errors: list[str] = field(default_factory=list)


async def sync_stripe(context: AppContext, progress: Progress | None = None) -> SyncSummary:
    """Reconcile every Stripe subscription with what we store; returns what changed."""
    provider = stripe_provider(context.providers)
    reconciler = provider.reconciler
    summary = SyncSummary()
    task = progress.add_task("subscriptions", total=None) if progress else None
    # Each subscription is stored under the moment its page was requested, not when its turn came:
    # a webhook that re-read it meanwhile holds newer truth and must not be overwritten.
    async for page, read_at in provider.gateway.iter_subscription_pages():
        summary.seen += len(page)
        # One read for the page; only what differs from what is stored is reconciled one by one.
        async with context.database.read_sessionmaker() as db:
            unchanged = await reconciler.already_stored(db, page, read_at=read_at)
        summary.unchanged += len(unchanged)
        for sub in page:
            if sub["id"] not in unchanged:
                await _sync_one(context, sub, read_at, summary)
        if progress is not None and task is not None:
            progress.update(task, advance=len(page))
    await _sync_purchases(context, summary)
    return summary


# How far back `sync stripe` re-reads one-time purchases: Stripe accepts refunds of card payments for
# 180 days, and a dispute may come later still, but by then its own event has long been retried.
PURCHASE_SYNC_DAYS = 180


async def _sync_purchases(context: AppContext, summary: SyncSummary) -> None:
    """Re-read recent one-time purchases (payments and refunds missed while entitle was down)."""
    provider = stripe_provider(context.providers)
    reconciler = provider.purchase_reconciler
    if reconciler is None:
        return
    read_at = utcnow()
    since = int((read_at - timedelta(days=PURCHASE_SYNC_DAYS)).timestamp())
    try:
        intents = await provider.gateway.list_payment_intents(created_since=since)
    except EntitleError as exc:
        summary.errors.append(f"one-time purchases: {exc.message}")
        return
    for intent in intents:
        if not is_entitle_purchase(intent) or intent.get("status") != "succeeded":
            continue
        summary.purchases += 1
        try:
            async with context.database.transaction() as db:
                before = (await db.execute(_STORED_PURCHASE, {"id": intent["id"]})).first()
                outcome = await reconciler.payment_intent(db, intent["id"], fresh=intent, read_at=read_at)
                after = (await db.execute(_STORED_PURCHASE, {"id": intent["id"]})).first()
        except EntitleError as exc:
            summary.errors.append(f"{intent['id']}: {exc.message}")
            continue
        if outcome.startswith("ignored"):
            summary.ignored += 1
        elif before != after:
            summary.changed[f"purchase {_purchase_label(before)} -> {_purchase_label(after)}"] += 1


def _purchase_label(row: Any) -> str:
    if row is None:
        return "new"
    refunded, revoked_at = row
    return "revoked" if revoked_at is not None else "partly refunded" if refunded else "paid"


_STORED_PURCHASE = select(Purchase.refunded_amount, Purchase.revoked_at).where(
    Purchase.store == Store.STRIPE.value, Purchase.store_purchase_id == bindparam("id")
)


async def _sync_one(
    context: AppContext, sub: dict[str, Any], read_at: datetime, summary: SyncSummary
) -> None:
    reconciler = stripe_provider(context.providers).reconciler
    try:
        # One transaction per subscription: one bad object cannot undo the others.
        async with context.database.transaction() as db:
            before = await db.scalar(_STORED_STATUS, {"id": sub["id"]})
            outcome = await reconciler.subscription(db, sub["id"], fresh=sub, read_at=read_at)
            after = await db.scalar(_STORED_STATUS, {"id": sub["id"]})
    except EntitleError as exc:
        summary.errors.append(f"{sub['id']}: {exc.message}")
        return
    if outcome.startswith("ignored"):
        summary.ignored += 1
    elif before != after:
        summary.changed[f"{before or 'new'} -> {after}"] += 1
    else:
        summary.unchanged += 1


_STORED_STATUS = select(Subscription.status).where(
    Subscription.store == Store.STRIPE.value, Subscription.store_subscription_id == bindparam("id")
)


@sync_app.command("stripe")
def sync_stripe_command() -> None:
    """Re-read every Stripe subscription and recent one-time purchase (auto-paginated, backing off on 429)
    and store Stripe's truth."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())

    async def _sync(context: AppContext) -> SyncSummary:
        with Progress(*columns, console=console, transient=True) as progress:
            summary = await sync_stripe(context, progress)
        if summary.changed:
            # Webhooks should have told us already: a change found here is an event that was missed.
            changes = ", ".join(f"{change}: {count}" for change, count in sorted(summary.changed.items()))
            total = sum(summary.changed.values())
            await alerter(context).sync_drift("stripe", f"{total} changed ({changes})")
        return summary

    summary = run_job(_sync)
    console.print(
        f"{summary.seen} subscription(s) and {summary.purchases} one-time purchase(s): "
        f"{sum(summary.changed.values())} changed, {summary.unchanged} unchanged, "
        f"{summary.ignored} not ours, {len(summary.errors)} failed"
    )
    for change, count in sorted(summary.changed.items()):
        console.print(f"  {change}: {count}")
    for error in summary.errors:
        console.print(f"  [red]{error}[/]")
    if summary.errors:
        fail("some subscriptions could not be synced; run again")
