"""Ownership rules, and staying in sync through the Server API stand-in and `entitle sync appstore`."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from entitle.cli import app as cli
from entitle.context import AppContext
from entitle.core.models.entitlements import Subscription
from entitle.core.models.events import ProviderEvent
from entitle.providers.appstore import sync
from entitle.providers.appstore.errors import AppStoreApiUnavailable
from entitle.providers.appstore.ledger import PurchaseBelongsToAnotherAccount, decide_owner, set_owner
from entitle.providers.appstore.provider import AppStoreProvider
from entitle.services.access.entitlements import read_entitlements
from entitle.settings import RestorePolicy
from tests.factories import make_account
from tests.standins.appstore import (
    CONSUMABLE,
    NON_CONSUMABLE,
    AppStoreSigner,
    OneTimePurchase,
    SubscriptionSimulator,
)
from tests.standins.appstore.fixtures import StandIn

A, B = uuid.uuid4(), uuid.uuid4()
TOKEN_A, TOKEN_B = uuid.uuid4(), uuid.uuid4()


# -- decide_owner ------------------------------------------------------------------------------------


def _decide(**overrides: Any) -> Any:
    values: dict[str, Any] = {
        "poster": B,
        "poster_token": TOKEN_B,
        "purchase_token": None,
        "family_shared": False,
        "current_owner": None,
        "policy": RestorePolicy.KEEP,
    }
    values.update(overrides)
    return decide_owner(**values)


def test_first_post_with_own_token_is_a_purchase() -> None:
    assert _decide(purchase_token=TOKEN_B).reason == "purchase"


def test_token_of_another_account_is_refused_under_both_policies() -> None:
    for policy in RestorePolicy:
        with pytest.raises(PurchaseBelongsToAnotherAccount):
            _decide(purchase_token=TOKEN_A, policy=policy)


def test_restore_without_token_follows_policy() -> None:
    with pytest.raises(PurchaseBelongsToAnotherAccount):
        _decide(current_owner=A)
    moved = _decide(current_owner=A, policy=RestorePolicy.TRANSFER)
    assert (moved.owner, moved.reason) == (B, "restore_transfer")


def test_same_owner_is_no_change_and_token_wins_over_ledger() -> None:
    assert _decide(current_owner=B).reason is None
    assert _decide(current_owner=A, purchase_token=TOKEN_B).reason == "token_matches"


def test_family_shared_ignores_the_purchaser_token() -> None:
    assert _decide(purchase_token=TOKEN_A, family_shared=True).owner == B


# -- the Server API ------------------------------------------------------------------------------------


@pytest.fixture
def _api_settings(
    settings_overrides: dict[str, Any], appstore_api: StandIn, appstore_root_path: Path
) -> None:
    settings_overrides.update(appstore_api.settings(appstore_root_path))


def _simulator(signer: AppStoreSigner, original: str, token: str | None) -> SubscriptionSimulator:
    return SubscriptionSimulator(
        signer=signer,
        original_transaction_id=original,
        product_id="com.example.app.pro.monthly",
        app_account_token=token,
        start=dt.datetime.now(dt.UTC) - dt.timedelta(days=5),
    )


async def _own(context: AppContext, original: str, account_id: uuid.UUID, token: uuid.UUID | None) -> None:
    async with context.database.transaction() as db:
        await set_owner(
            db,
            original_transaction_id=original,
            owner=account_id,
            reason="purchase",
            environment="Sandbox",
            product_id="com.example.app.pro.monthly",
            purchase_token=token,
            ownership_type="PURCHASED",
            now=dt.datetime.now(dt.UTC),
        )


@pytest.mark.usefixtures("_api_settings")
async def test_sync_refreshes_backfills_and_sets_tokens(
    context: AppContext, appstore_api: StandIn, signer: AppStoreSigner
) -> None:
    provider: AppStoreProvider = context.providers["app_store"]
    async with context.database.sessionmaker() as db:
        owner = await make_account(db, email="sync@example.com")
        owner_id, owner_token = owner.id, owner.app_account_token
    # A purchase made outside the app, known to the ledger; Apple sent notifications we never received.
    sim = _simulator(signer, "5000000000000001", None)
    for note in (sim.subscribe(), sim.set_auto_renew(False)):
        appstore_api.state.record(note, delivered=False)
    await _own(context, "5000000000000001", owner_id, None)
    appstore_api.state.rate_limit_next = 1
    appstore_api.state.page_size = 1  # forces pagination through the history
    seen: list[tuple[str, int, int]] = []

    summary = await sync.sync_all(
        provider, ingest=ingest_with(context), history_days=30, on_progress=lambda *step: seen.append(step)
    )
    await context.pipeline.wait_idle()

    assert summary.failed == []
    assert (summary.refreshed, summary.notifications_seen, summary.notifications_new) == (1, 2, 2)
    assert summary.tokens_set == 1 and summary.rate_limited == 1
    assert appstore_api.state.tokens_set == [("5000000000000001", str(owner_token))]
    assert ("refresh", 1, 1) in seen
    async with context.database.sessionmaker() as db:
        row = await db.scalar(
            select(Subscription).where(Subscription.store_subscription_id == "5000000000000001")
        )
        assert row is not None and (row.status, row.will_renew) == ("canceled_at_period_end", False)
        stored = (
            await db.scalars(select(ProviderEvent.status).where(ProviderEvent.provider == "app_store"))
        ).all()
        assert sorted(stored) == ["processed", "processed"]
    # A second run finds nothing new and no token to set.
    again = await sync.sync_all(provider, ingest=ingest_with(context), history_days=30)
    assert (again.notifications_new, again.tokens_set) == (0, 0)


@pytest.mark.usefixtures("_api_settings")
async def test_persistent_rate_limiting_is_reported(context: AppContext, appstore_api: StandIn) -> None:
    provider: AppStoreProvider = context.providers["app_store"]
    assert provider.api is not None
    provider.api.pacer._sleep = _no_sleep  # the backoff schedule itself is not under test here
    async with context.database.sessionmaker() as db:
        owner = await make_account(db, email="busy@example.com")
    await _own(context, "5000000000000002", owner.id, owner.app_account_token)
    appstore_api.state.rate_limit_next = 100
    with pytest.raises(AppStoreApiUnavailable):
        await sync.refresh_subscription(provider, "5000000000000002")
    # Retried for about 20 seconds of short waits, every 429 counted on both sides.
    assert provider.api.rate_limited > 5
    assert provider.api.rate_limited == appstore_api.state.limits.stats.total_rate_limited


def ingest_with(context: AppContext) -> sync.Ingest:
    async def ingest(body: bytes) -> bool:
        return (await context.pipeline.ingest(context.providers["app_store"], body, {})).created

    return ingest


async def _no_sleep(_: float) -> None:
    return None


async def test_sync_without_credentials_is_a_clear_error(context: AppContext) -> None:
    with pytest.raises(AppStoreApiUnavailable):
        await sync.sync_all(context.providers["app_store"], ingest=ingest_with(context))  # type: ignore[arg-type]


@pytest.mark.usefixtures("_api_settings")
async def test_cli_sync_appstore(
    context: AppContext, appstore_api: StandIn, signer: AppStoreSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with context.database.sessionmaker() as db:
        owner = await make_account(db, email="cli@example.com")
    sim = _simulator(signer, "5000000000000003", str(owner.app_account_token))
    appstore_api.state.record(sim.subscribe(), delivered=False)
    await _own(context, "5000000000000003", owner.id, owner.app_account_token)
    env = {f"ENTITLE_{name.upper()}": _env(value) for name, value in context.settings.model_dump().items()}
    for name, value in env.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("ENTITLE_ADMIN_API_KEY", context.settings.admin_api_key.get_secret_value())  # type: ignore[union-attr]

    result = await _run_cli(["sync", "appstore", "--history-days", "7"])
    assert result.exit_code == 0, result.output
    assert "subscriptions refreshed" in result.output and "1 / 1" in result.output


def _env(value: Any) -> str | None:
    if value is None or value == [] or hasattr(value, "get_secret_value"):
        return None
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value.value if hasattr(value, "value") else value)


async def _run_cli(args: list[str]) -> Any:
    import asyncio

    # The command runs its own event loop; keep it off this test's loop.
    return await asyncio.to_thread(CliRunner().invoke, cli, args)


# -- one-time purchases missed while entitle was down -------------------------------------------------


@pytest.mark.usefixtures("_api_settings")
async def test_sync_finds_one_time_purchases_and_refunds_missed_while_down(
    context: AppContext, appstore_api: StandIn, signer: AppStoreSigner
) -> None:
    provider: AppStoreProvider = context.providers["app_store"]
    async with context.database.sessionmaker() as db:
        owner = await make_account(db, email="sync-one-time@example.com")
        owner_id, token = owner.id, str(owner.app_account_token)
    bought_at = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    lifetime = OneTimePurchase(
        signer=signer,
        transaction_id="5100000000000001",
        product_id="com.example.app.pro.lifetime",
        type=NON_CONSUMABLE,
        app_account_token=token,
        bought_at=bought_at,
    )
    pack = OneTimePurchase(
        signer=signer,
        transaction_id="5100000000000002",
        product_id="com.example.app.credits.100",
        type=CONSUMABLE,
        app_account_token=token,
        bought_at=bought_at,
    )
    # The lifetime unlock was bought and recorded; then entitle was down while Apple refunded it and
    # while a credit pack was bought.
    appstore_api.state.record_one_time(lifetime.buy())
    await _own(context, "5100000000000001", owner_id, owner.app_account_token)
    await ingest_with(context)(json.dumps(lifetime.history[0].body).encode())
    await context.pipeline.wait_idle()
    appstore_api.state.record_one_time(lifetime.refund(), delivered=False)
    appstore_api.state.record_one_time(pack.buy(), delivered=False)

    summary = await sync.sync_all(provider, ingest=ingest_with(context), history_days=30)
    await context.pipeline.wait_idle()

    assert summary.failed == []
    assert (summary.refreshed, summary.purchases_refreshed, summary.purchases_changed) == (0, 1, 1)
    # Nothing asked Get All Subscription Statuses or Set App Account Token about one-time purchases.
    assert not [path for _, path in appstore_api.state.requests if "/subscriptions/" in path]
    assert appstore_api.state.tokens_set == []
    async with context.database.sessionmaker() as db:
        answer = await read_entitlements(db, owner_id)
    assert answer["entitlements"]["pro"]["active"] is False
    assert answer["balances"] == {"credits": 100}
    refunded = {p["id"]: p["refunded_at"] is not None for p in answer["purchases"]}
    assert refunded == {"5100000000000001": True, "5100000000000002": False}
    # A second run finds nothing more.
    again = await sync.sync_all(provider, ingest=ingest_with(context), history_days=30)
    assert (again.purchases_changed, again.notifications_new) == (0, 0)
