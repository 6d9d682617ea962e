"""Each App Store handler called directly with a minted notification of its own type.

The notifications come from `SubscriptionSimulator`, which signs them with the test chain the way Apple
would; each test verifies one, hands it to `HANDLERS[type]` and reads back the subscription and the events.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.entitlements import Subscription
from entitle.core.models.events import AccountEvent
from entitle.db.types import utcnow
from entitle.providers.appstore import handlers as handlers_module
from entitle.providers.appstore.handlers import HANDLERS
from entitle.providers.appstore.ledger import set_owner
from entitle.providers.appstore.notifications import NotificationContext
from entitle.providers.appstore.provider import AppStoreProvider
from entitle.providers.appstore.verification import VerifiedNotification
from entitle.services.access.purchases import PURCHASE_COMPLETED, StoredPurchases
from entitle.services.access.subscriptions import StoredSubscriptions
from tests.factories import make_account
from tests.providers.appstore.constants import MONTHLY
from tests.standins.appstore import (
    NON_CONSUMABLE,
    AppStoreSigner,
    Notification,
    OneTimePurchase,
    SubscriptionSimulator,
)

Sim = SubscriptionSimulator


def _subscribed_then(*steps: Callable[[Sim], Notification]) -> Callable[[Sim], list[Notification]]:
    def run(sim: Sim) -> list[Notification]:
        return [sim.subscribe(), *(step(sim) for step in steps)]

    return run


def _summary(sim: Sim) -> Notification:
    # A mass extension's summary names no subscription: only `summary` in the payload.
    payload = sim.signer.notification("RENEWAL_EXTENSION", "SUMMARY", signed_date=sim.clock + 1)
    payload["summary"] = {
        **payload.pop("data"),
        "productId": MONTHLY,
        "requestIdentifier": str(uuid.uuid4()),
        "storefrontCountryCodes": ["USA"],
        "succeededCount": 3,
        "failedCount": 0,
    }
    return _as_notification(sim, payload, "RENEWAL_EXTENSION")


def _record_only(kind: str, **data: Any) -> Callable[[Sim], Notification]:
    def make(sim: Sim) -> Notification:
        payload = sim.signer.notification(
            kind,
            signed_date=sim.clock + 1,
            transaction=sim.current_transaction(),
            data_overrides=data,
        )
        return _as_notification(sim, payload, kind)

    return make


def _one_time_charge(sim: Sim) -> Notification:
    # The same customer buys the lifetime unlock: a transaction of its own, not the subscription's.
    return OneTimePurchase(
        signer=sim.signer,
        transaction_id="7000000000000099",
        product_id="com.example.app.pro.lifetime",
        type=NON_CONSUMABLE,
        app_account_token=sim.app_account_token,
        bought_at=sim.start,
    ).buy()


def _test(sim: Sim) -> Notification:
    return _as_notification(sim, sim.signer.notification("TEST", signed_date=sim.clock + 1), "TEST")


def _as_notification(sim: Sim, payload: dict[str, Any], kind: str) -> Notification:
    return Notification(
        kind,
        payload.get("subtype"),
        payload["signedDate"],
        payload["notificationUUID"],
        0,
        {},
        {},
        sim.signer.sign(payload),
    )


# For every type in HANDLERS: the notifications leading up to it (the last one is handed to the handler
# under test; the earlier ones go through their own handlers), the outcome's start, and what follows.
CASES: dict[str, tuple[Callable[[Sim], list[Notification]], str, str | None, str | None]] = {
    "SUBSCRIBED": (lambda sim: [sim.subscribe()], "applied active", "active", None),
    "DID_RENEW": (_subscribed_then(Sim.renew), "applied active", "active", None),
    "DID_FAIL_TO_RENEW": (
        _subscribed_then(lambda sim: sim.fail_to_renew(grace=True)),
        "applied in_grace_period",
        "in_grace_period",
        None,
    ),
    "GRACE_PERIOD_EXPIRED": (
        _subscribed_then(lambda sim: sim.fail_to_renew(grace=True), Sim.grace_period_expired),
        "applied in_billing_retry",
        "in_billing_retry",
        None,
    ),
    "EXPIRED": (_subscribed_then(lambda sim: sim.expire("VOLUNTARY")), "applied expired", "expired", None),
    "DID_CHANGE_RENEWAL_PREF": (
        _subscribed_then(Sim.downgrade),
        "applied active",
        "active",
        handlers_module.RENEWAL_PREFERENCE_CHANGED,
    ),
    "DID_CHANGE_RENEWAL_STATUS": (
        _subscribed_then(lambda sim: sim.set_auto_renew(False)),
        "applied canceled_at_period_end",
        "canceled_at_period_end",
        None,
    ),
    "OFFER_REDEEMED": (_subscribed_then(Sim.offer_redeemed), "applied active", "active", None),
    "PRICE_INCREASE": (
        _subscribed_then(lambda sim: sim.price_increase(accepted=False)),
        "applied active",
        "active",
        handlers_module.PRICE_INCREASE,
    ),
    "REFUND": (_subscribed_then(Sim.refund), "applied revoked", "revoked", handlers_module.REFUNDED),
    "REFUND_REVERSED": (
        _subscribed_then(Sim.refund, Sim.refund_reversed),
        "applied active",
        "active",
        handlers_module.REFUND_REVERSED,
    ),
    "REFUND_DECLINED": (
        _subscribed_then(_record_only("REFUND_DECLINED")),
        "recorded",
        "active",
        handlers_module.REFUND_DECLINED,
    ),
    "REVOKE": (
        _subscribed_then(Sim.family_revoke),
        "applied revoked",
        "revoked",
        handlers_module.FAMILY_SHARING_REVOKED,
    ),
    "RENEWAL_EXTENDED": (_subscribed_then(Sim.renewal_extended), "applied active", "active", None),
    "RENEWAL_EXTENSION": (lambda sim: [_summary(sim)], "acknowledged RENEWAL_EXTENSION", None, None),
    "CONSUMPTION_REQUEST": (
        _subscribed_then(_record_only("CONSUMPTION_REQUEST", consumptionRequestReason="UNINTENDED_PURCHASE")),
        "recorded",
        "active",
        handlers_module.CONSUMPTION_REQUESTED,
    ),
    "TEST": (lambda sim: [_test(sim)], "acknowledged TEST", None, None),
    "ONE_TIME_CHARGE": (
        lambda sim: [_one_time_charge(sim)],
        "applied purchase standing",
        None,
        PURCHASE_COMPLETED,
    ),
}


# Cases that happen at the end of the first period.
RENEWAL_TIME = frozenset({"DID_RENEW", "DID_FAIL_TO_RENEW", "GRACE_PERIOD_EXPIRED"})


def test_every_handler_has_a_case_and_a_why_comment() -> None:
    assert set(CASES) == set(HANDLERS)
    lines = Path(handlers_module.__file__).read_text().splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("HANDLERS: dict")) :]
    for kind in HANDLERS:
        at = next(i for i, line in enumerate(table) if line.strip().startswith(f'"{kind}":'))
        assert table[at - 1].strip().startswith("# "), kind


class Harness:
    def __init__(
        self, context: AppContext, signer: AppStoreSigner, account_id: uuid.UUID, token: str
    ) -> None:
        self.context, self.signer, self.account_id = context, signer, account_id
        self.provider: AppStoreProvider = context.providers["app_store"]
        self.token = token

    def simulator(self, *, ownership: str = "PURCHASED", days_ago: int = 10) -> Sim:
        return Sim(
            signer=self.signer,
            original_transaction_id="7000000000000001",
            product_id=MONTHLY,
            app_account_token=None if ownership == "FAMILY_SHARED" else self.token,
            # Ten days into a 30-day period; 31 days ago puts the first renewal (or its failure) now.
            start=dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago),
            ownership=ownership,
        )

    def verify(self, note: Notification) -> VerifiedNotification:
        return self.provider.verifier.verify_notification(note.signed_payload)

    async def handle(self, note: Notification) -> str:
        verified = self.verify(note)
        async with self.context.database.transaction() as db:
            ctx = NotificationContext(
                db=db,
                note=verified,
                catalog=self.context.catalog,
                sink=StoredSubscriptions(),
                now=utcnow(),
                purchases=StoredPurchases(),
            )
            return await HANDLERS[verified.notification_type](ctx)

    async def subscription(self, original: str = "7000000000000001") -> Subscription | None:
        async with self.context.database.sessionmaker() as db:
            return await db.scalar(select(Subscription).where(Subscription.store_subscription_id == original))

    async def event_types(self) -> list[str]:
        async with self.context.database.sessionmaker() as db:
            mine = AccountEvent.account_id == self.account_id
            return list(await db.scalars(select(AccountEvent.type).where(mine)))


@pytest.fixture
async def harness(context: AppContext, signer: AppStoreSigner) -> Harness:
    async with context.database.sessionmaker() as db:
        account = await make_account(db, email="handlers@example.com")
        return Harness(context, signer, account.id, str(account.app_account_token))


async def _own_family_purchase(harness: Harness, sim: Sim) -> None:
    # A family member's transaction carries no token of theirs: the app's post is what records the owner.
    async with harness.context.database.transaction() as db:
        await set_owner(
            db,
            original_transaction_id=sim.original_transaction_id,
            owner=harness.account_id,
            reason="claimed_without_token",
            environment="Sandbox",
            product_id=MONTHLY,
            purchase_token=None,
            ownership_type="FAMILY_SHARED",
            now=utcnow(),
        )


@pytest.mark.parametrize("kind", sorted(CASES))
async def test_handler_applies_its_own_notification(harness: Harness, kind: str) -> None:
    steps, outcome, status, event = CASES[kind]
    sim = harness.simulator(
        ownership="FAMILY_SHARED" if kind == "REVOKE" else "PURCHASED",
        days_ago=31 if kind in RENEWAL_TIME else 10,
    )
    if kind == "REVOKE":
        await _own_family_purchase(harness, sim)
    *before, last = steps(sim)
    for note in before:
        await harness.handle(note)
    assert last.notification_type == kind
    assert (await harness.handle(last)).startswith(outcome)
    row = await harness.subscription()
    assert (row.status if row is not None else None) == status
    if event is not None:
        assert event in await harness.event_types()


async def test_upgrade_takes_the_new_product_now(harness: Harness) -> None:
    sim = harness.simulator()
    await harness.handle(sim.subscribe())
    assert await harness.handle(sim.upgrade()) == "applied active"
    row = await harness.subscription()
    assert row is not None and row.product == "pro_yearly"


async def test_downgrade_keeps_the_current_product_until_renewal(harness: Harness) -> None:
    sim = harness.simulator()
    await harness.handle(sim.subscribe())
    await harness.handle(sim.downgrade())
    row = await harness.subscription()
    assert row is not None and (row.product, row.will_renew) == ("pro_monthly", True)
    assert row.raw["renewal_info"]["autoRenewProductId"] == "com.example.app.pro.yearly"


async def test_refund_of_a_past_period_does_not_revoke_the_current_one(harness: Harness) -> None:
    sim = harness.simulator(days_ago=31)
    first_period = sim.subscribe().transaction
    await harness.handle(sim.renew())
    refund = sim.signer.signed_notification(
        "REFUND",
        signed_date=sim.clock + 1000,
        transaction={
            **first_period,
            "revocationDate": sim.clock,
            "revocationReason": 0,
            "signedDate": sim.clock + 1000,
        },
        status=1,
    )
    note = Notification("REFUND", None, sim.clock + 1000, "", 1, {}, {}, refund)
    assert (await harness.handle(note)).startswith("ignored")
    row = await harness.subscription()
    assert row is not None and row.status == "active"
    assert handlers_module.REFUNDED in await harness.event_types()


async def test_upgraded_away_transaction_in_a_notification_is_not_applied(harness: Harness) -> None:
    sim = harness.simulator()
    monthly = sim.subscribe().transaction
    await harness.handle(sim.upgrade())
    stale = sim.signer.signed_notification(
        "DID_CHANGE_RENEWAL_STATUS",
        "AUTO_RENEW_ENABLED",
        signed_date=sim.clock + 1000,
        transaction={**monthly, "isUpgraded": True, "signedDate": sim.clock + 1000},
        renewal_info=sim.current_renewal_info(),
        status=1,
    )
    note = Notification("DID_CHANGE_RENEWAL_STATUS", None, sim.clock + 1000, "", 1, {}, {}, stale)
    assert await harness.handle(note) == "ignored: upgraded to another product"
    row = await harness.subscription()
    assert row is not None and row.product == "pro_yearly"
