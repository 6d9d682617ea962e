"""Property: however a subscription's events are interleaved, duplicated or delayed, entitle ends on
the stand-in's final truth."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.entitlements import Subscription
from entitle.db.types import utcnow
from entitle.providers.stripe.mapping import subscription_state
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.billing import billing_stripe
from tests.factories import make_account
from tests.providers.stripe.conftest import deliver
from tests.standins.stripe import StripeStandin
from tests.standins.stripe.billing import latest_charge

pytestmark = pytest.mark.usefixtures("pushed")

# What can happen at Stripe after a first payment; each step emits its own events.
STEPS = [
    "renew",
    "fail_renewal",
    "recover",
    "cancel_at_period_end",
    "undo_cancel",
    "pause_collection",
    "unpause_collection",
    "refund",
    "cancel_now",
]
_emails = itertools.count()


def _apply(standin: StripeStandin, sub_id: str, step: str) -> None:
    status = standin.subscription(sub_id)["status"]
    if status == "canceled":
        return
    if step == "recover" and status != "past_due":
        return
    if step == "fail_renewal" and status == "past_due":
        return
    actions = {
        "renew": lambda: standin.renew(sub_id) if status in ("active", "past_due") else None,
        "fail_renewal": lambda: standin.fail_renewal(sub_id),
        "recover": lambda: standin.recover(sub_id),
        "cancel_at_period_end": lambda: standin.cancel_at_period_end(sub_id, True),
        "undo_cancel": lambda: standin.cancel_at_period_end(sub_id, False),
        "pause_collection": lambda: standin.pause_collection(sub_id),
        "unpause_collection": lambda: standin.unpause_collection(sub_id),
        "refund": lambda: standin.refund(sub_id) if not _refunded(standin, sub_id) else None,
        "cancel_now": lambda: standin.cancel_now(sub_id),
    }
    actions[step]()


def _refunded(standin: StripeStandin, sub_id: str) -> bool:
    charge = latest_charge(standin.state, standin.subscription(sub_id)["latest_invoice"])
    return charge is None or charge["amount_refunded"] > 0 or not charge["paid"]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_any_interleaving_converges_on_stripes_truth(
    data: st.DataObject,
    client: httpx.AsyncClient,
    context: AppContext,
    stripe_provider: StripeProvider,
    standin: StripeStandin,
) -> None:
    async with context.database.sessionmaker() as db:
        account = await make_account(db, email=f"prop{next(_emails)}@example.com")
        session = await billing_stripe.start_checkout(
            db, stripe_provider, account, "pro_monthly", success_url=None, cancel_url=None
        )
        await db.commit()
    start = len(standin.events.log)
    standin.complete_checkout(session["id"])
    sub_id = standin.state.get(session["id"], "checkout.session")["subscription"]
    pending: list[dict[str, Any]] = []
    seen = start
    for step in data.draw(st.lists(st.sampled_from(STEPS), max_size=6), label="steps"):
        _apply(standin, sub_id, step)
        pending.extend(standin.events.log[seen:])
        seen = len(standin.events.log)
        # Stripe delivers some events now (maybe twice), holds others back for later.
        now = (
            data.draw(st.lists(st.sampled_from(pending), max_size=4), label="deliver now") if pending else []
        )
        for event in now:
            assert (await deliver(client, standin, event)).status_code == 200
    pending.extend(standin.events.log[seen:])
    late = data.draw(st.permutations(pending), label="late order")
    for event in late:
        assert (await deliver(client, standin, event)).status_code == 200

    truth = standin.subscription(sub_id)
    truth["default_payment_method"] = standin.state.render(
        standin.state.objects[truth["default_payment_method"]]
    )
    charge = latest_charge(standin.state, truth["latest_invoice"])
    refunded = charge is not None and charge["paid"] and charge["refunded"]
    expected = subscription_state(
        truth,
        account_id=account.id,
        catalog=context.catalog,
        read_at=utcnow(),
        grace_days=7,
        refunded=refunded,
    )
    async with context.database.sessionmaker() as db:
        row = await db.scalar(select(Subscription).where(Subscription.store_subscription_id == sub_id))
    assert row is not None
    assert (row.status, row.will_renew, row.current_period_end, row.product) == (
        expected.status.value,
        expected.will_renew,
        expected.current_period_end,
        expected.product,
    )
