"""Property: however Stripe delivers the events of many one-time purchases (shuffled, some twice), with
refunds and disputes among them, every account ends on what the stand-in's money says.

The expected figures are worked out here from the stand-in's own PaymentIntents, charges and disputes
(what a person reading the Stripe dashboard would conclude), never from entitle's purchase code.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from entitle.context import AppContext
from entitle.core.models.accounts import Account
from entitle.core.models.events import AccountEvent, InboxStatus, ProviderEvent
from entitle.core.models.purchases import Balance, BalanceTransaction, Purchase
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.access.entitlements import read_entitlements
from entitle.services.billing import billing_stripe
from tests.factories import make_account
from tests.providers.stripe.conftest import deliver, stripe_settings
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")

# A catalog with every kind of one-time product, each granting something of its own so that what an
# account holds says which purchase stands: two credit packs (two currencies), a lifetime unlock and a
# 30-day pass. Prices are what the test's arithmetic reads back from the stand-in.
CATALOG = """
[entitlements.vault]
description = "Unlocked for good"

[entitlements.trip]
description = "For a month"

[currencies.credits]
name = "Credits"

[currencies.gems]
name = "Gems"

[products.credits_100]
name = "100 credits"
type = "consumable"
grants = { credits = 100 }
max_quantity = 10
stripe = { lookup_key = "credits_100", unit_amount = 499, currency = "usd" }

[products.gems_7]
name = "7 gems"
type = "consumable"
grants = { gems = 7 }
max_quantity = 5
stripe = { lookup_key = "gems_7", unit_amount = 333, currency = "usd" }

[products.vault_lifetime]
name = "Vault, lifetime"
type = "non_consumable"
entitlements = ["vault"]
stripe = { lookup_key = "vault_lifetime", unit_amount = 2999, currency = "usd" }

[products.trip_pass]
name = "30-day trip pass"
type = "non_renewing"
duration_days = 30
entitlements = ["trip"]
stripe = { lookup_key = "trip_pass", unit_amount = 999, currency = "usd" }
"""

# What each product grants, as the catalog above says (the test's own reading of it).
GRANTS = {"credits_100": {"credits": 100}, "gems_7": {"gems": 7}}
UNLOCKS = {"vault_lifetime": "vault", "trip_pass": "trip"}
MAX_QUANTITY = {"credits_100": 10, "gems_7": 5}

# What happens to a payment after it succeeded.
AFTERMATHS = [
    "kept",
    "partial_refund",
    "two_partial_refunds",
    "full_refund",
    "partial_then_full_refund",
    "dispute_open",
    "dispute_won",
    "dispute_lost",
    "partial_refund_then_dispute_lost",
    "partial_refund_then_dispute_won",
]

_emails = itertools.count()


@pytest.fixture
def settings_overrides(standin: StripeStandin, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("catalog") / "catalog.toml"
    path.write_text(CATALOG)
    return stripe_settings(standin) | {"catalog": str(path)}


@dataclass(frozen=True)
class Plan:
    product: str
    quantity: int | None
    how: str
    aftermath: str
    # Where in the charge a partial refund cuts, as a share of the amount (0 < share < 1).
    share: float


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    product = draw(st.sampled_from(["credits_100", "gems_7", "vault_lifetime", "trip_pass"]))
    quantity = draw(st.integers(1, MAX_QUANTITY[product])) if product in MAX_QUANTITY else None
    return Plan(
        product=product,
        quantity=quantity,
        how=draw(st.sampled_from(["checkout", "payment_intent"])),
        aftermath=draw(st.sampled_from(AFTERMATHS)),
        share=draw(st.floats(0.01, 0.99)),
    )


async def _buy(
    context: AppContext, provider: StripeProvider, standin: StripeStandin, account_id: uuid.UUID, plan: Plan
) -> str:
    """The person pays for `plan` at the stand-in; returns the PaymentIntent id."""
    async with context.database.sessionmaker() as db:
        account = await db.get(Account, account_id)
        assert account is not None
        if plan.how == "checkout":
            session = await billing_stripe.start_checkout(
                db, provider, account, plan.product, success_url=None, cancel_url=None, quantity=plan.quantity
            )
            await db.commit()
            standin.complete_checkout(session["id"])
            return str(standin.state.get(session["id"], "checkout.session")["payment_intent"])
        started = await billing_stripe.start_payment(db, provider, account, plan.product, plan.quantity)
        await db.commit()
    assert standin.confirm_payment_intent(started["payment_intent_id"])
    return str(started["payment_intent_id"])


def _aftermath(standin: StripeStandin, intent_id: str, plan: Plan) -> None:
    amount = int(standin.payment_intent(intent_id)["amount"])
    cut = max(1, min(amount - 2, int(amount * plan.share)))
    match plan.aftermath:
        case "partial_refund":
            standin.refund_payment(intent_id, amount=cut)
        case "two_partial_refunds":
            standin.refund_payment(intent_id, amount=max(1, cut // 2))
            standin.refund_payment(intent_id, amount=1)
        case "full_refund":
            standin.refund_payment(intent_id)
        case "partial_then_full_refund":
            standin.refund_payment(intent_id, amount=cut)
            standin.refund_payment(intent_id)
        case "dispute_open":
            standin.open_dispute(intent_id)
        case "dispute_won" | "dispute_lost":
            standin.close_dispute(
                standin.open_dispute(intent_id)["id"], plan.aftermath.removeprefix("dispute_")
            )
        case "partial_refund_then_dispute_lost" | "partial_refund_then_dispute_won":
            standin.refund_payment(intent_id, amount=cut)
            dispute = standin.open_dispute(intent_id)
            standin.close_dispute(dispute["id"], plan.aftermath.rsplit("_", 1)[1])


@dataclass
class Truth:
    """What one account holds, read off the stand-in's objects."""

    purchases: set[str]
    balances: Counter[str]
    entitlements: set[str]


def _truth(standin: StripeStandin, account_id: uuid.UUID) -> Truth:
    truth = Truth(purchases=set(), balances=Counter(), entitlements=set())
    state = standin.state
    for intent in state.all("payment_intent"):
        metadata = intent["metadata"]
        if metadata.get("account_id") != str(account_id) or intent["status"] != "succeeded":
            continue
        truth.purchases.add(intent["id"])
        charge = state.objects[intent["latest_charge"]]
        disputes = [d for d in state.all("dispute") if d["charge"] == charge["id"]]
        # The money is back with the person: refunded in full, or a dispute not (yet) won by the merchant.
        taken_back = charge["amount_refunded"] >= charge["amount"] or any(
            d["status"] != "won" for d in disputes
        )
        product, quantity = metadata["entitle_product"], int(metadata["entitle_quantity"])
        if taken_back:
            continue
        for currency, each in GRANTS.get(product, {}).items():
            full = each * quantity
            # A partial refund takes back the refunded share of the credits, rounded down (a cent back
            # never costs the person a whole credit).
            truth.balances[currency] += full - full * charge["amount_refunded"] // charge["amount"]
        if product in UNLOCKS:
            truth.entitlements.add(UNLOCKS[product])
    return truth


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), accounts=st.lists(st.lists(plans(), min_size=1, max_size=3), min_size=1, max_size=3))
async def test_shuffled_duplicated_purchase_events_end_on_the_standins_money(
    data: st.DataObject,
    accounts: list[list[Plan]],
    acknowledging_client: httpx.AsyncClient,
    context: AppContext,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    # The database and the stand-in are shared by every example: each example has its own accounts.
    start = len(standin.events.log)
    account_ids: list[uuid.UUID] = []
    for plans_of_account in accounts:
        async with context.database.sessionmaker() as db:
            account = await make_account(db, email=f"buyer{next(_emails)}@example.com")
            account_ids.append(account.id)
        for plan in plans_of_account:
            _aftermath(standin, await _buy(context, stripe_provider, standin, account.id, plan), plan)

    # Every event the stand-in emitted, some more than once, in an order of hypothesis' choosing; the
    # endpoint answers at once and the work happens behind it, concurrently.
    emitted = standin.events.log[start:]
    again = data.draw(st.lists(st.sampled_from(emitted), max_size=len(emitted) // 2), label="redelivered")
    order = data.draw(st.permutations([*emitted, *again]), label="delivery order")
    for event in order:
        response = await deliver(acknowledging_client, standin, event)
        assert response.status_code == 200, response.text
    await context.pipeline.wait_idle()
    # Nothing was left failed or waiting for a retry: each event was worked on and settled.
    async with context.database.sessionmaker() as db:
        unsettled = (
            await db.execute(
                select(ProviderEvent.type, ProviderEvent.last_error).where(
                    ProviderEvent.status != InboxStatus.PROCESSED
                )
            )
        ).all()
    assert unsettled == []

    for account_id in account_ids:
        truth = _truth(standin, account_id)
        async with context.database.sessionmaker() as db:
            answer = await read_entitlements(db, account_id)
            rows = list(
                await db.scalars(select(Purchase.store_purchase_id).where(Purchase.account_id == account_id))
            )
            stored = {
                b.currency: b.amount
                for b in await db.scalars(select(Balance).where(Balance.account_id == account_id))
            }
            sums = await db.execute(
                select(BalanceTransaction.currency, func.sum(BalanceTransaction.amount))
                .where(BalanceTransaction.account_id == account_id)
                .group_by(BalanceTransaction.currency)
            )
            ledger = {currency: int(total or 0) for currency, total in sums}
            completed = await db.scalar(
                select(func.count())
                .select_from(AccountEvent)
                .where(AccountEvent.account_id == account_id, AccountEvent.type == "purchase.completed")
            )
        # Every purchase stored exactly once, and announced once.
        assert sorted(rows) == sorted(truth.purchases)
        assert sorted(p["id"] for p in answer["purchases"]) == sorted(truth.purchases)
        assert completed == len(truth.purchases)
        # The money: what the app sees, what is stored and what the ledger adds up to all agree with Stripe.
        currencies = {"credits", "gems"}
        expected = {c: truth.balances[c] for c in currencies}
        assert {c: answer["balances"].get(c, 0) for c in currencies} == expected
        assert {c: stored.get(c, 0) for c in currencies} == expected
        assert {c: int(ledger.get(c) or 0) for c in currencies} == expected
        # Unlocked exactly while a lifetime or pass purchase stands.
        active = {key for key, e in answer["entitlements"].items() if e.get("active")}
        assert active == truth.entitlements
