"""App Store one-time purchases: the mapping to the core's PurchaseState, the consumption measure, and
the notifications that carry them (signed by the stand-in, delivered to the webhook)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.catalog import Catalog, ProductType
from entitle.core.models.events import AccountEvent
from entitle.core.subscriptions import Environment, Store
from entitle.providers.appstore.consumption import fifo_remaining
from entitle.providers.appstore.mapping import minor_units, purchase_state
from entitle.providers.appstore.verification import AppStoreVerifier
from tests.factories import register
from tests.standins.appstore import (
    CONSUMABLE,
    NON_CONSUMABLE,
    NON_RENEWING,
    AppStoreSigner,
    OneTimePurchase,
    SubscriptionSimulator,
    ms,
)

ACCOUNT = uuid.UUID("0b8e4a5e-4d43-4c1b-9a7e-0a4a5cb0c002")
LIFETIME = "com.example.app.pro.lifetime"
CREDITS = "com.example.app.credits.100"


def _purchase(signer: AppStoreSigner, kind: str, product: str = LIFETIME, **kwargs: Any) -> OneTimePurchase:
    return OneTimePurchase(
        signer=signer,
        transaction_id="4000000000000001",
        product_id=product,
        type=kind,
        app_account_token=None,
        bought_at=dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC),
        **kwargs,
    )


# -- mapping -------------------------------------------------------------------------------------


def test_a_lifetime_purchase_maps_to_its_catalog_product(
    signer: AppStoreSigner, verifier: AppStoreVerifier, catalog: Catalog
) -> None:
    bought = _purchase(signer, NON_CONSUMABLE, price=199990)
    state = purchase_state(
        verifier.verify_transaction(bought.signed_transaction()), account_id=ACCOUNT, catalog=catalog
    )
    assert (state.store, state.store_purchase_id, state.product, state.type) == (
        Store.APP_STORE,
        "4000000000000001",
        "pro_lifetime",
        ProductType.NON_CONSUMABLE,
    )
    assert (state.amount, state.currency, state.quantity) == (19999, "usd", 1)
    assert state.purchased_at == bought.bought_at and state.environment is Environment.SANDBOX
    assert state.vendor_updated_at == bought.bought_at
    assert (state.revoked_at, state.revocation_reason, state.family_shared) == (None, None, False)


def test_an_unknown_product_takes_its_type_from_the_transaction(
    signer: AppStoreSigner, verifier: AppStoreVerifier, catalog: Catalog
) -> None:
    for kind, expected in (
        (CONSUMABLE, ProductType.CONSUMABLE),
        (NON_RENEWING, ProductType.NON_RENEWING),
        (NON_CONSUMABLE, ProductType.NON_CONSUMABLE),
    ):
        bought = _purchase(signer, kind, product="com.example.app.not.in.catalog", quantity=4)
        state = purchase_state(
            verifier.verify_transaction(bought.signed_transaction()), account_id=ACCOUNT, catalog=catalog
        )
        assert (state.product, state.type, state.quantity) == (None, expected, 4)


def test_the_catalog_type_wins_over_the_transaction_type(
    signer: AppStoreSigner, verifier: AppStoreVerifier, catalog: Catalog
) -> None:
    mislabeled = _purchase(signer, NON_CONSUMABLE, product=CREDITS)
    state = purchase_state(
        verifier.verify_transaction(mislabeled.signed_transaction()), account_id=ACCOUNT, catalog=catalog
    )
    assert (state.product, state.type) == ("credits_100", ProductType.CONSUMABLE)


@pytest.mark.parametrize(
    ("milli", "currency", "minor"),
    [(4990, "usd", 499), (1_200_000, "jpy", 1200), (5124, "kwd", 5124), (4995, "eur", 500), (0, "usd", 0)],
)
def test_apple_prices_become_minor_units(milli: int, currency: str, minor: int) -> None:
    assert minor_units(milli, currency) == minor


def test_prices_apple_would_never_send_are_no_price() -> None:
    assert minor_units(None, "usd") is None and minor_units(-5, "usd") is None
    assert minor_units(True, "usd") is None and minor_units("4990", "usd") is None


def test_a_refund_revokes_with_the_whole_amount(
    signer: AppStoreSigner, verifier: AppStoreVerifier, catalog: Catalog
) -> None:
    bought = _purchase(signer, CONSUMABLE, product=CREDITS, price=4990)
    note = verifier.verify_notification(bought.refund().signed_payload)
    assert note.transaction is not None
    state = purchase_state(note.transaction, account_id=ACCOUNT, catalog=catalog, notification=note)
    assert state.revoked_at == bought.bought_at + dt.timedelta(hours=1)
    assert (state.revocation_reason, state.refunded_amount, state.amount) == ("refunded", 499, 499)
    # The notification's own signedDate orders it against the device's copies.
    assert state.vendor_updated_at == dt.datetime.fromtimestamp(note.raw["signedDate"] / 1000, dt.UTC)


def test_a_family_member_is_revoked_not_refunded_and_paid_nothing(
    signer: AppStoreSigner, verifier: AppStoreVerifier, catalog: Catalog
) -> None:
    shared = _purchase(signer, NON_CONSUMABLE, ownership="FAMILY_SHARED")
    state = purchase_state(
        verifier.verify_transaction(shared.signed_transaction()), account_id=ACCOUNT, catalog=catalog
    )
    assert (state.family_shared, state.amount, state.currency) == (True, None, None)
    note = verifier.verify_notification(shared.family_revoke().signed_payload)
    assert note.transaction is not None
    revoked = purchase_state(note.transaction, account_id=ACCOUNT, catalog=catalog, notification=note)
    assert (revoked.revocation_reason, revoked.refunded_amount) == ("revoked", 0)
    assert revoked.revoked_at is not None


def test_a_non_renewing_transaction_carries_no_end_of_its_own(
    signer: AppStoreSigner, verifier: AppStoreVerifier, catalog: Catalog
) -> None:
    bought = _purchase(signer, NON_RENEWING, product="com.example.app.pass")
    state = purchase_state(
        verifier.verify_transaction(bought.signed_transaction()), account_id=ACCOUNT, catalog=catalog
    )
    assert (state.type, state.store_expires_at) == (ProductType.NON_RENEWING, None)
    dated = bought.signed_transaction(expiresDate=ms(bought.bought_at + dt.timedelta(days=7)))
    state = purchase_state(verifier.verify_transaction(dated), account_id=ACCOUNT, catalog=catalog)
    assert state.store_expires_at == bought.bought_at + dt.timedelta(days=7)


# -- how much of a purchase's credit is spent (first in, first out) --------------------------------
MINE = "purchase:app_store:1"


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        # Nothing spent.
        ([(100, MINE)], (100, 100)),
        # Older credits are spent first: this purchase is still whole.
        ([(50, "grant"), (100, MINE), (-50, "api")], (100, 100)),
        # Then this purchase's.
        ([(50, "grant"), (100, MINE), (-80, "api")], (100, 70)),
        # Later credits do not make spent credits unspent.
        ([(100, MINE), (-100, "api"), (100, "subscription:x")], (100, 0)),
        # A debt is paid back by the next credit first.
        ([(-30, "adjustment"), (100, MINE)], (100, 70)),
        # The purchase's own refund takes back its own credits, not older ones.
        ([(50, "grant"), (100, MINE), (-100, MINE)], (0, 0)),
        ([(100, "other"), (-40, "api"), (100, MINE)], (100, 100)),
    ],
)
def test_fifo_remaining(rows: list[tuple[int, str]], expected: tuple[int, int]) -> None:
    assert fifo_remaining(rows, MINE) == expected


# -- notifications ---------------------------------------------------------------------------------


async def _events(context: AppContext, account_id: str, kind: str) -> list[dict[str, Any]]:
    async with context.database.sessionmaker() as db:
        rows = await db.scalars(
            select(AccountEvent)
            .where(AccountEvent.account_id == uuid.UUID(account_id), AccountEvent.type == kind)
            .order_by(AccountEvent.created_at)
        )
        return [dict(row.data) for row in rows]


async def _deliver(client: httpx.AsyncClient, body: dict[str, str]) -> dict[str, Any]:
    response = await client.post("/webhooks/appstore", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_a_consumable_bought_and_notified_twice_credits_once(
    client: httpx.AsyncClient, context: AppContext, signer: AppStoreSigner
) -> None:
    session = await register(client, "notified-pack@example.com")
    account = session["account"]
    pack = OneTimePurchase(
        signer=signer,
        transaction_id="4000000000000002",
        product_id=CREDITS,
        type=CONSUMABLE,
        app_account_token=account["app_account_token"],
        bought_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5),
        quantity=2,
    )
    note = pack.buy()
    await _deliver(client, note.body)
    assert (await _deliver(client, note.body))["duplicate"] is True
    # Apple sends a second notification for the same transaction (a new notificationUUID): no new credit.
    await _deliver(client, pack.buy().body)
    me = await client.get(
        "/v1/me/entitlements", headers={"Authorization": f"Bearer {session['access_token']}"}
    )
    assert me.json()["balances"] == {"credits": 200}
    assert len(await _events(context, account["id"], "purchase.completed")) == 1


async def test_every_paid_subscription_period_is_a_payment(
    client: httpx.AsyncClient, context: AppContext, signer: AppStoreSigner
) -> None:
    session = await register(client, "renewals@example.com")
    account = session["account"]
    sim = SubscriptionSimulator(
        signer=signer,
        original_transaction_id="4000000000000100",
        product_id="com.example.app.pro.monthly",
        app_account_token=account["app_account_token"],
        start=dt.datetime.now(dt.UTC) - dt.timedelta(days=70),
    )
    notes = [sim.subscribe(trial=True), sim.renew(), sim.renew()]
    for note in notes:
        await _deliver(client, note.body)
    await _deliver(client, notes[-1].body)  # Apple retries: still one payment for that period
    payments = await _events(context, account["id"], "payment.succeeded")
    # The free trial paid nothing; each renewal paid $9.99.
    assert [(p["amount"], p["currency"], p["store"], p["subscription_id"]) for p in payments] == [
        (999, "usd", "app_store", "4000000000000100")
    ] * 2
    assert [p["transaction_id"] for p in payments] == [n.transaction["transactionId"] for n in notes[1:]]
    assert {p["environment"] for p in payments} == {"sandbox"}
    # Apple refunds the last period: money out, once, however often Apple sends it.
    refund = sim.refund()
    await _deliver(client, refund.body)
    await _deliver(client, refund.body)
    refunds = await _events(context, account["id"], "payment.refunded")
    assert [(r["amount_refunded"], r["currency"], r["subscription_id"]) for r in refunds] == [
        (999, "usd", "4000000000000100")
    ]


async def test_a_family_members_subscription_is_no_payment_of_theirs(
    client: httpx.AsyncClient, context: AppContext, signer: AppStoreSigner
) -> None:
    session = await register(client, "family-renewals@example.com")
    account = session["account"]
    sim = SubscriptionSimulator(
        signer=signer,
        original_transaction_id="4000000000000200",
        product_id="com.example.app.pro.monthly",
        app_account_token=account["app_account_token"],
        start=dt.datetime.now(dt.UTC) - dt.timedelta(days=40),
        ownership="FAMILY_SHARED",
    )
    from entitle.providers.appstore.ledger import set_owner

    async with context.database.transaction() as db:
        await set_owner(
            db,
            original_transaction_id="4000000000000200",
            owner=uuid.UUID(account["id"]),
            reason="claimed_without_token",
            environment="Sandbox",
            product_id="com.example.app.pro.monthly",
            purchase_token=None,
            ownership_type="FAMILY_SHARED",
            now=dt.datetime.now(dt.UTC),
        )
    for note in (sim.subscribe(), sim.renew()):
        await _deliver(client, note.body)
    assert await _events(context, account["id"], "payment.succeeded") == []
