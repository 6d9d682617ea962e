"""The lifecycle rule: (stored state, new state) -> the events the app's backend hears, each once."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta

import pytest

from entitle.core.subscriptions import SubscriptionState, SubscriptionStatus
from entitle.core.transitions import transitions
from entitle.db.types import utcnow
from tests.factories import app_store_subscription

ACCOUNT = uuid.uuid4()
NOW = utcnow()


def types(previous: SubscriptionState | None, current: SubscriptionState) -> list[str]:
    return [t.type for t in transitions(previous, current)]


ACTIVE = app_store_subscription(ACCOUNT, current_period_end=NOW + timedelta(days=30))


def later(state: SubscriptionState, **changes: object) -> SubscriptionState:
    return replace(state, vendor_updated_at=state.vendor_updated_at + timedelta(seconds=1), **changes)


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (None, ACTIVE, ["subscription.started"]),
        (None, replace(ACTIVE, status=SubscriptionStatus.TRIALING), ["subscription.started"]),
        (None, replace(ACTIVE, status=SubscriptionStatus.INCOMPLETE), []),
        (None, replace(ACTIVE, status=SubscriptionStatus.EXPIRED), []),
        (replace(ACTIVE, status=SubscriptionStatus.INCOMPLETE), ACTIVE, ["subscription.started"]),
        (ACTIVE, later(ACTIVE, current_period_end=NOW + timedelta(days=60)), ["subscription.renewed"]),
        (
            replace(ACTIVE, status=SubscriptionStatus.TRIALING),
            later(ACTIVE, current_period_end=NOW + timedelta(days=60)),
            ["subscription.renewed"],
        ),
        (ACTIVE, later(ACTIVE, product="pro_yearly"), ["subscription.plan_changed"]),
        (
            ACTIVE,
            later(ACTIVE, status=SubscriptionStatus.CANCELED_AT_PERIOD_END, will_renew=False),
            ["subscription.will_not_renew"],
        ),
        (
            replace(ACTIVE, status=SubscriptionStatus.CANCELED_AT_PERIOD_END, will_renew=False),
            later(ACTIVE),
            ["subscription.will_renew"],
        ),
        (
            ACTIVE,
            later(
                ACTIVE, status=SubscriptionStatus.IN_GRACE_PERIOD, current_period_end=NOW + timedelta(days=60)
            ),
            ["subscription.billing_issue"],
        ),
        (ACTIVE, later(ACTIVE, status=SubscriptionStatus.PAST_DUE), ["subscription.billing_issue"]),
        # Stripe moved the period when it billed; the payment succeeding later is the renewal.
        (replace(ACTIVE, status=SubscriptionStatus.PAST_DUE), later(ACTIVE), ["subscription.renewed"]),
        (
            replace(ACTIVE, status=SubscriptionStatus.CANCELED_AT_PERIOD_END, will_renew=False),
            later(ACTIVE, status=SubscriptionStatus.EXPIRED, will_renew=False),
            ["subscription.expired"],
        ),
        (
            ACTIVE,
            later(ACTIVE, status=SubscriptionStatus.REVOKED, will_renew=False),
            ["subscription.refunded"],
        ),
        (
            replace(ACTIVE, status=SubscriptionStatus.EXPIRED, will_renew=False),
            later(ACTIVE, current_period_end=NOW + timedelta(days=90)),
            ["subscription.started"],
        ),
        # Applied again, or nothing the backend cares about changed: nothing to say.
        (ACTIVE, ACTIVE, []),
        (ACTIVE, later(ACTIVE), []),
        (
            replace(ACTIVE, status=SubscriptionStatus.EXPIRED),
            later(ACTIVE, status=SubscriptionStatus.EXPIRED),
            [],
        ),
    ],
)
def test_each_transition_is_named_once(
    previous: SubscriptionState | None, current: SubscriptionState, expected: list[str]
) -> None:
    assert types(previous, current) == expected


def test_a_purchase_moving_to_another_account_is_a_transfer_for_the_new_owner() -> None:
    other = uuid.uuid4()
    [transfer] = transitions(ACTIVE, later(ACTIVE, account_id=other))
    assert transfer.type == "subscription.transferred"
    assert transfer.account_id == other
    assert transfer.data["from_account_id"] == str(ACCOUNT)


def test_subscription_events_carry_store_product_id_and_expiry() -> None:
    [started] = transitions(None, ACTIVE)
    assert started.data["store"] == "app_store"
    assert started.data["product"] == "pro_monthly"
    assert started.data["subscription_id"] == ACTIVE.store_subscription_id
    assert started.data["expires_at"] == ACTIVE.current_period_end.isoformat().replace("+00:00", "Z")


def test_a_renewal_names_the_status_it_renewed_from_so_trial_conversions_can_be_counted() -> None:
    trialing = replace(ACTIVE, status=SubscriptionStatus.TRIALING)
    [converted] = transitions(trialing, later(ACTIVE, current_period_end=NOW + timedelta(days=60)))
    assert (converted.type, converted.data["previous_status"]) == ("subscription.renewed", "trialing")
    [renewed] = transitions(ACTIVE, later(ACTIVE, current_period_end=NOW + timedelta(days=60)))
    assert renewed.data["previous_status"] == "active"
