"""One-time purchases through Stripe: paid on hosted Checkout or with a PaymentIntent at the stand-in,
their events delivered signed to /webhooks/stripe in any order, any number of times."""

from __future__ import annotations

import random
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.models.accounts import Account
from entitle.core.models.events import AccountEvent
from entitle.core.models.purchases import BalanceTransaction, Purchase
from entitle.providers.stripe.handlers import webhook_event_types
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.access import balances
from entitle.services.access.entitlements import read_entitlements
from entitle.services.billing import billing_stripe
from tests.factories import make_account
from tests.providers.stripe.conftest import deliver
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")


async def _answer(context: AppContext, account_id: uuid.UUID) -> dict[str, Any]:
    async with context.database.sessionmaker() as db:
        return await read_entitlements(db, account_id)


async def _deliver_all(
    client: httpx.AsyncClient, standin: StripeStandin, events: list[dict[str, Any]]
) -> None:
    for event in events:
        response = await deliver(client, standin, event)
        assert response.status_code == 200, response.text


def _scrambled(events: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Every event, some twice, in a shuffled order (what Stripe's retries and parallel sends do)."""
    rng = random.Random(seed)
    mixed = events + rng.sample(events, k=max(1, len(events) // 2))
    rng.shuffle(mixed)
    return mixed


async def _checkout(
    db: AsyncSession,
    provider: StripeProvider,
    standin: StripeStandin,
    email: str,
    product: str,
    quantity: int | None = None,
) -> tuple[Account, str]:
    """An account that paid for `product` on payment-mode Checkout; returns it and the PaymentIntent id."""
    account = await make_account(db, email=email)
    session = await billing_stripe.start_checkout(
        db, provider, account, product, success_url=None, cancel_url=None, quantity=quantity
    )
    await db.commit()
    standin.complete_checkout(session["id"])
    paid = standin.state.get(session["id"], "checkout.session")
    assert paid["mode"] == "payment" and paid["payment_status"] == "paid"
    return account, str(paid["payment_intent"])


async def _payment(
    db: AsyncSession,
    provider: StripeProvider,
    standin: StripeStandin,
    email: str,
    product: str,
    quantity: int | None = None,
) -> tuple[Account, str]:
    account = await make_account(db, email=email)
    started = await billing_stripe.start_payment(db, provider, account, product, quantity)
    await db.commit()
    assert started["client_secret"].startswith(started["payment_intent_id"])
    assert standin.confirm_payment_intent(started["payment_intent_id"])
    return account, str(started["payment_intent_id"])


async def _purchases(context: AppContext, account_id: uuid.UUID) -> list[Purchase]:
    async with context.database.sessionmaker() as db:
        return list(await db.scalars(select(Purchase).where(Purchase.account_id == account_id)))


async def _ledger(context: AppContext, account_id: uuid.UUID) -> list[int]:
    async with context.database.sessionmaker() as db:
        rows = await db.scalars(
            select(BalanceTransaction.amount)
            .where(BalanceTransaction.account_id == account_id)
            .order_by(BalanceTransaction.created_at)
        )
        return list(rows)


async def _event_count(context: AppContext, account_id: uuid.UUID, type: str) -> int:
    async with context.database.sessionmaker() as db:
        return int(
            await db.scalar(
                select(func.count())
                .select_from(AccountEvent)
                .where(AccountEvent.account_id == account_id, AccountEvent.type == type)
            )
            or 0
        )


@pytest.mark.parametrize("how", ["checkout", "payment_intent"])
async def test_a_credit_pack_credits_once_whatever_the_delivery(
    how: str,
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    buy = _checkout if how == "checkout" else _payment
    account, intent_id = await buy(db, stripe_provider, standin, f"pack-{how}@example.com", "credits_100", 3)
    await _deliver_all(client, standin, _scrambled(list(standin.events.log), seed=7))
    answer = await _answer(context, account.id)
    assert answer["balances"] == {"credits": 300}
    (purchase,) = answer["purchases"]
    assert purchase["id"] == intent_id and purchase["product"] == "credits_100"
    assert purchase["quantity"] == 3 and purchase["refunded_at"] is None
    assert await _ledger(context, account.id) == [300]
    assert await _event_count(context, account.id, "purchase.completed") == 1
    # Stripe sends everything once more, a day late: nothing moves.
    await _deliver_all(client, standin, list(reversed(standin.events.log)))
    assert (await _answer(context, account.id))["balances"] == {"credits": 300}
    assert await _ledger(context, account.id) == [300]


@pytest.mark.parametrize("how", ["checkout", "payment_intent"])
async def test_a_lifetime_unlock_entitles_for_good(
    how: str,
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    buy = _checkout if how == "checkout" else _payment
    account, intent_id = await buy(db, stripe_provider, standin, f"life-{how}@example.com", "pro_lifetime")
    await _deliver_all(client, standin, _scrambled(list(standin.events.log), seed=3))
    pro = (await _answer(context, account.id))["entitlements"]["pro"]
    assert pro["active"] is True and pro["source"] == "purchase" and pro["expires_at"] is None
    rows = await _purchases(context, account.id)
    assert [(r.store_purchase_id, r.amount, r.currency) for r in rows] == [(intent_id, 19999, "usd")]
    # Owned: a second purchase is refused before anything is charged.
    async with context.database.sessionmaker() as session:
        again = await session.get(Account, account.id)
        assert again is not None
        with pytest.raises(Exception) as refused:
            await billing_stripe.start_checkout(
                session, stripe_provider, again, "pro_lifetime", success_url=None, cancel_url=None
            )
    assert getattr(refused.value, "code", None) == "already_purchased"


async def test_an_unpaid_payment_intent_applies_nothing(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    account = await make_account(db, email="unpaid@example.com")
    started = await billing_stripe.start_payment(db, stripe_provider, account, "credits_100", 2)
    await db.commit()
    assert standin.confirm_payment_intent(started["payment_intent_id"], card="0341") is False
    # Even a forged-looking `payment_intent.succeeded` (a stale replay) is only a nudge: the re-read says
    # the payment did not happen.
    created = standin.events.of_type("payment_intent.created")[-1]
    nudge = {**created, "id": "evt_nudge_0001", "type": "payment_intent.succeeded"}
    await _deliver_all(client, standin, [*standin.events.log, nudge])
    answer = await _answer(context, account.id)
    assert answer["purchases"] == [] and answer["balances"] in ({}, {"credits": 0})
    # A double click answers the same PaymentIntent while it is unpaid.
    again = await billing_stripe.start_payment(db, stripe_provider, account, "credits_100", 2)
    assert again["payment_intent_id"] == started["payment_intent_id"]


async def test_a_partial_refund_takes_back_a_proportional_share(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    account, intent_id = await _checkout(
        db, stripe_provider, standin, "partial@example.com", "credits_100", 4
    )
    paid = list(standin.events.log)
    # 4 packs for $19.96; half of it back.
    standin.refund_payment(intent_id, amount=998)
    refund_events = standin.events.log[len(paid) :]
    # The refund's events arrive before the payment's, and again after.
    await _deliver_all(client, standin, [*refund_events, *paid, *refund_events])
    answer = await _answer(context, account.id)
    assert answer["balances"] == {"credits": 200}
    (purchase,) = answer["purchases"]
    assert purchase["refunded_at"] is None
    assert await _event_count(context, account.id, "payment.refunded") == 1


async def test_a_full_refund_takes_back_the_credits_even_below_zero(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    account, intent_id = await _payment(db, stripe_provider, standin, "spent@example.com", "credits_100")
    await _deliver_all(client, standin, list(standin.events.log))
    assert (await _answer(context, account.id))["balances"] == {"credits": 100}
    # The app's backend spends 80 of them.
    async with context.database.transaction() as session:
        await balances.post(
            session, account.id, "credits", -80, reason="used", source="api", idempotency_key="spend-1"
        )
    seen = len(standin.events.log)
    standin.refund_payment(intent_id)
    await _deliver_all(client, standin, _scrambled(standin.events.log[seen:], seed=1))
    answer = await _answer(context, account.id)
    assert answer["balances"] == {"credits": -80}
    (purchase,) = answer["purchases"]
    assert purchase["refunded_at"] is not None


async def test_a_full_refund_ends_a_lifetime_unlock(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    account, intent_id = await _checkout(db, stripe_provider, standin, "refund@example.com", "pro_lifetime")
    standin.refund_payment(intent_id)
    # Everything at once, shuffled: the refund may arrive before the purchase was ever stored.
    await _deliver_all(client, standin, _scrambled(list(standin.events.log), seed=11))
    answer = await _answer(context, account.id)
    assert answer["entitlements"].get("pro", {}).get("active") is not True
    assert answer["purchases"][0]["refunded_at"] is not None
    assert await _event_count(context, account.id, "purchase.refunded") == 1


async def test_a_dispute_ends_an_unlock_until_it_is_won(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    account, intent_id = await _payment(db, stripe_provider, standin, "dispute@example.com", "pro_lifetime")
    await _deliver_all(client, standin, list(standin.events.log))
    assert (await _answer(context, account.id))["entitlements"]["pro"]["active"] is True
    seen = len(standin.events.log)
    dispute = standin.open_dispute(intent_id)
    await _deliver_all(client, standin, standin.events.log[seen:])
    assert (await _answer(context, account.id))["entitlements"].get("pro", {}).get("active") is not True
    seen = len(standin.events.log)
    standin.close_dispute(dispute["id"], "won")
    await _deliver_all(client, standin, standin.events.log[seen:] * 2)
    assert (await _answer(context, account.id))["entitlements"]["pro"]["active"] is True


async def test_a_lost_dispute_takes_back_credits(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    account, intent_id = await _checkout(db, stripe_provider, standin, "lost@example.com", "credits_100", 2)
    dispute = standin.open_dispute(intent_id)
    standin.close_dispute(dispute["id"], "lost")
    await _deliver_all(client, standin, _scrambled(list(standin.events.log), seed=5))
    answer = await _answer(context, account.id)
    assert answer["balances"] == {"credits": 0}
    assert answer["purchases"][0]["refunded_at"] is not None


async def test_a_subscription_refund_still_revokes_and_records_no_purchase(
    client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    from tests.providers.stripe.conftest import paid_checkout

    account, sub_id = await paid_checkout(db, stripe_provider, standin, "subref@example.com")
    standin.refund(sub_id)
    standin.cancel_now(sub_id)
    await _deliver_all(client, standin, list(standin.events.log))
    answer = await _answer(context, account.id)
    assert answer["purchases"] == []
    assert answer["subscriptions"][0]["status"] == "revoked"
    # The subscription's first payment is recorded as money in, once.
    assert await _event_count(context, account.id, "payment.succeeded") == 1
    # ... and its refund as money out, once (the one-time purchase path logs none for it).
    assert await _event_count(context, account.id, "payment.refunded") == 1


def test_the_webhook_endpoint_listens_to_purchase_events() -> None:
    types = set(webhook_event_types())
    assert {
        "payment_intent.succeeded",
        "checkout.session.async_payment_succeeded",
        "charge.dispute.created",
        "charge.dispute.closed",
        "charge.refunded",
    } <= types


PASS_CATALOG = """
[products.pass_30]
name = "30-day pass"
type = "non_renewing"
duration_days = 30
entitlements = ["pro"]
stripe = { lookup_key = "pass_30", unit_amount = 999, currency = "usd" }
"""


class TestNonRenewing:
    """A non-renewing product (a 30-day pass), in a catalog of its own."""

    @pytest.fixture
    def settings_overrides(
        self, standin: StripeStandin, tmp_path_factory: pytest.TempPathFactory
    ) -> dict[str, Any]:
        from entitle.core.catalog import packaged_catalog_text
        from tests.providers.stripe.conftest import stripe_settings

        path = tmp_path_factory.mktemp("catalog") / "catalog.toml"
        path.write_text(packaged_catalog_text() + PASS_CATALOG)
        return stripe_settings(standin) | {"catalog": str(path)}

    @pytest.mark.parametrize("how", ["checkout", "payment_intent"])
    async def test_a_pass_entitles_for_its_days_and_ends_with_a_refund(
        self,
        how: str,
        client: httpx.AsyncClient,
        context: AppContext,
        db: AsyncSession,
        stripe_provider: StripeProvider,
        standin: StripeStandin,
    ) -> None:
        buy = _checkout if how == "checkout" else _payment
        account, intent_id = await buy(db, stripe_provider, standin, f"pass-{how}@example.com", "pass_30")
        await _deliver_all(client, standin, _scrambled(list(standin.events.log), seed=9))
        answer = await _answer(context, account.id)
        pro = answer["entitlements"]["pro"]
        assert pro["active"] is True and pro["source"] == "purchase" and pro["expires_at"] is not None
        (purchase,) = answer["purchases"]
        assert purchase["id"] == intent_id and purchase["type"] == "non_renewing"
        assert purchase["expires_at"] == pro["expires_at"]
        seen = len(standin.events.log)
        standin.refund_payment(intent_id)
        await _deliver_all(client, standin, standin.events.log[seen:] * 2)
        assert (await _answer(context, account.id))["entitlements"]["pro"]["active"] is False


async def test_a_checkout_purchase_settles_on_its_first_attempt_from_any_one_of_its_events(
    acknowledging_client: httpx.AsyncClient,
    context: AppContext,
    db: AsyncSession,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    from entitle.core.models.events import InboxStatus, ProviderEvent

    account, intent_id = await _checkout(
        db, stripe_provider, standin, "first-try@example.com", "credits_100", 2
    )
    # The session's completion alone (its read is of a PaymentIntent, not a subscription), then its receipt
    # invoice's events (which read nothing), each worked on as it arrives.
    completed = standin.events.of_type("checkout.session.completed")[-1]
    receipts = [e for e in standin.events.log if e["type"].startswith("invoice.")]
    for event in [completed, *receipts]:
        assert (await deliver(acknowledging_client, standin, event)).status_code == 200
        await context.pipeline.wait_idle()
    assert (await _answer(context, account.id))["balances"] == {"credits": 200}
    async with context.database.sessionmaker() as session:
        rows = list(await session.scalars(select(ProviderEvent)))
    assert {(row.type, row.status, row.attempts) for row in rows} == {
        (row.type, InboxStatus.PROCESSED, 1) for row in rows
    }
    assert any(row.type == "invoice.paid" for row in rows)
