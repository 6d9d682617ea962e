"""Guest Checkout at Stripe: the paid session held once for its claim, the guest's customer ignored until an
account claims it, and found for that account afterwards (adopted, or mapped beside the account's own)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.guest import GuestCheckout
from entitle.core.models.mail import OutboundMail
from entitle.core.subscriptions import SubscriptionStatus
from entitle.errors import Conflict
from entitle.providers.stripe.guests import guest_payment
from entitle.providers.stripe.handlers import HandlerContext, handle
from entitle.providers.stripe.models import StripeCustomer
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.access import trials
from entitle.services.access.entitlements import read_entitlements
from entitle.services.billing import billing_stripe, guest_checkout
from tests.factories import make_account, stripe_subscription
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")


def _context(db: AsyncSession, stripe: StripeProvider, *, guests: bool = True) -> HandlerContext:
    return HandlerContext(
        db=db,
        reconciler=stripe.reconciler,
        purchases=stripe.purchase_reconciler,
        guests=guest_checkout.StoredGuestCheckouts(stripe.catalog) if guests else None,
    )


async def _paid_as_guest(
    db: AsyncSession, stripe: StripeProvider, standin: StripeStandin, product: str = "pro_monthly"
) -> tuple[dict[str, Any], int]:
    """A visitor's Checkout, paid at the stand-in; returns the session and where its events begin."""
    started = await guest_checkout.start_guest_checkout(
        db, stripe, product, browser_secret="b" * 43, success_url=None, cancel_url=None
    )
    await db.commit()
    since = len(standin.events.log)
    session = standin.complete_checkout(started["id"], email="guest@example.com")
    return session, since


def _completed(standin: StripeStandin, since: int) -> dict[str, Any]:
    return next(e for e in standin.events.log[since:] if e["type"] == "checkout.session.completed")


async def test_a_paid_guest_session_is_held_once_and_mailed_once(
    db: AsyncSession, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    session, since = await _paid_as_guest(db, stripe_provider, standin)
    payment = guest_payment(session)
    assert payment is not None and payment.email == "guest@example.com"
    assert payment.store_subscription_id == session["subscription"] and payment.store_customer_id
    event = _completed(standin, since)
    first = await handle(_context(db, stripe_provider), event)
    second = await handle(_context(db, stripe_provider), event)
    assert first.endswith("held for its claim") and second.endswith("already held")
    mails = await db.scalar(select(func.count()).where(OutboundMail.template == "guest_paid"))
    assert mails == 1
    row = await db.scalar(select(GuestCheckout))
    assert row is not None and row.status == "paid" and row.claimed_account_id is None


async def test_the_guests_own_events_are_ignored_until_a_claim(
    db: AsyncSession, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    _, since = await _paid_as_guest(db, stripe_provider, standin)
    outcomes = [await handle(_context(db, stripe_provider), e) for e in standin.events.log[since:]]
    assert any("entitle did not create" in outcome for outcome in outcomes)
    assert await db.scalar(select(func.count()).select_from(StripeCustomer)) == 0


async def test_without_a_guest_sink_the_session_is_only_acknowledged(
    db: AsyncSession, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    _, since = await _paid_as_guest(db, stripe_provider, standin)
    outcome = await handle(_context(db, stripe_provider, guests=False), _completed(standin, since))
    assert "not recorded here" in outcome


async def test_after_a_claim_the_guest_customer_leads_to_an_account_that_had_its_own(
    db: AsyncSession, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    account = await make_account(db, email="has-a-customer@example.com")
    own_customer = await billing_stripe.customer_id_for(db, stripe_provider, account)
    session, since = await _paid_as_guest(db, stripe_provider, standin, "pro_yearly")
    await handle(_context(db, stripe_provider), _completed(standin, since))
    row = await db.scalar(select(GuestCheckout))
    assert row is not None
    answer = await guest_checkout.claim(db, stripe_provider, row, account, via="link")
    assert answer["entitlements"]["pro"]["active"] is True
    # The account keeps its own customer; the guest's is mapped to it through the claimed row.
    kept = await db.get(StripeCustomer, account.id)
    assert kept is not None and kept.customer_id == own_customer
    assert await stripe_provider.reconciler.account_for(db, session["customer"]) == account.id
    await db.commit()

    # A later change at Stripe (canceled now) reaches the account like any other subscription's.
    since = len(standin.events.log)
    standin.cancel_now(session["subscription"])
    for event in standin.events.log[since:]:
        await handle(_context(db, stripe_provider), event)
    await db.commit()
    after = await read_entitlements(db, account.id)
    assert after["entitlements"]["pro"]["active"] is False


async def test_a_claim_by_an_account_without_a_customer_adopts_the_guests(
    db: AsyncSession, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    account = await make_account(db, email="new@example.com")
    session, since = await _paid_as_guest(db, stripe_provider, standin, "credits_100")
    await handle(_context(db, stripe_provider), _completed(standin, since))
    row = await db.scalar(select(GuestCheckout))
    assert row is not None and row.store_purchase_id == session["payment_intent"]
    answer = await guest_checkout.claim(db, stripe_provider, row, account, via="browser")
    assert answer["balances"] == {"credits": 100}
    kept = await db.get(StripeCustomer, account.id)
    assert kept is not None and kept.customer_id == session["customer"]
    # A second claim of the same purchase moves nothing.
    other = await make_account(db, email="other@example.com")
    with pytest.raises(Conflict) as refused:
        await guest_checkout.claim(db, stripe_provider, row, other, via="browser")
    assert refused.value.code == "already_claimed"


async def test_a_guests_trial_does_not_move_into_an_account_that_had_its_trial(
    db: AsyncSession, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    account = await make_account(db, email="tried@example.com")
    had = stripe_subscription(account.id, status=SubscriptionStatus.TRIALING, store_subscription_id="sub_old")
    await trials.record_trial(db, had, stripe_provider.catalog)
    session, since = await _paid_as_guest(db, stripe_provider, standin, "pro_yearly")
    assert standin.subscription(session["subscription"])["status"] == "trialing"
    await handle(_context(db, stripe_provider), _completed(standin, since))
    row = await db.scalar(select(GuestCheckout))
    assert row is not None
    with pytest.raises(Conflict) as refused:
        await guest_checkout.claim(db, stripe_provider, row, account, via="link")
    assert refused.value.code == "trial_already_used"
    await db.refresh(row)
    assert row.status == "paid" and row.claimed_account_id is None and row.token_used_at is None
    assert await db.get(StripeCustomer, account.id) is None
