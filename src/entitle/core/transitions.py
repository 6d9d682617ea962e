"""What happened to a subscription, derived from what the store said before and what it says now.

Both stores end in the same place, `services.access.subscriptions.apply_subscription_state`, with the stored
state (or nothing, for a subscription seen for the first time) and the new one. `transitions` turns
that pair into the subscription lifecycle events the app's backend hears about. It is a pure function
of the two states, so a snapshot applied twice, or one older than the stored state (never applied),
produces nothing: each transition is announced at most once, whichever store, event order or retry
brought it.

The rules, in the order events are emitted:
- `subscription.transferred`: the subscription now belongs to another account (an App Store restore
  under another account moves the purchase).
- `subscription.started`: first seen entitling, or entitling again after it had ended or never paid.
- `subscription.plan_changed`: the catalog product changed while it stayed live.
- `subscription.renewed`: the paid period moved forward on the same product (a renewal, a trial
  converting, or a failed renewal recovering); `previous_status` tells which (`trialing` for a trial
  that converted, which reports count).
- `subscription.will_not_renew` / `subscription.will_renew`: auto-renewal switched off or back on
  while the subscription is live.
- `subscription.billing_issue`: a renewal payment failed (grace period, billing retry, past due).
- `subscription.expired`: it ended without a refund.
- `subscription.refunded`: the store took it back (refund, revocation, chargeback).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from entitle.core.entitlements import isoformat
from entitle.core.subscriptions import ENTITLING_STATUSES, SubscriptionState, SubscriptionStatus

SUBSCRIPTION_STARTED = "subscription.started"
SUBSCRIPTION_RENEWED = "subscription.renewed"
SUBSCRIPTION_PLAN_CHANGED = "subscription.plan_changed"
SUBSCRIPTION_WILL_NOT_RENEW = "subscription.will_not_renew"
SUBSCRIPTION_WILL_RENEW = "subscription.will_renew"
SUBSCRIPTION_BILLING_ISSUE = "subscription.billing_issue"
SUBSCRIPTION_EXPIRED = "subscription.expired"
SUBSCRIPTION_REFUNDED = "subscription.refunded"
SUBSCRIPTION_TRANSFERRED = "subscription.transferred"

# A payment for the renewal failed; the store is still trying (and may still grant access).
BILLING_ISSUE_STATUSES = frozenset(
    {SubscriptionStatus.IN_GRACE_PERIOD, SubscriptionStatus.IN_BILLING_RETRY, SubscriptionStatus.PAST_DUE}
)
# The subscription is over; nothing more happens to it unless the person subscribes again.
ENDED_STATUSES = frozenset({SubscriptionStatus.EXPIRED, SubscriptionStatus.REVOKED})
# Statuses in which a subscription exists and may still renew (its renewal setting means something).
LIVE_STATUSES = ENTITLING_STATUSES | BILLING_ISSUE_STATUSES | {SubscriptionStatus.PAUSED}


@dataclass(frozen=True)
class Transition:
    """One lifecycle event for one account."""

    type: str
    account_id: uuid.UUID
    data: dict[str, Any] = field(default_factory=dict)


def subscription_data(state: SubscriptionState) -> dict[str, Any]:
    """The fields every subscription event carries."""
    return {
        "store": state.store.value,
        "product": state.product,
        "subscription_id": state.store_subscription_id,
        "expires_at": isoformat(state.current_period_end),
        "status": state.status.value,
        "will_renew": state.will_renew,
        "environment": state.environment.value,
    }


def transitions(previous: SubscriptionState | None, current: SubscriptionState) -> list[Transition]:
    """The lifecycle events that lead from `previous` (None: first seen) to `current`, in order."""
    data = subscription_data(current)
    found: list[Transition] = []

    def emit(type: str, **extra: Any) -> None:
        found.append(Transition(type=type, account_id=current.account_id, data={**data, **extra}))

    now_entitling = current.status in ENTITLING_STATUSES
    if previous is None:
        if now_entitling:
            emit(SUBSCRIPTION_STARTED)
        elif current.status in BILLING_ISSUE_STATUSES:
            emit(SUBSCRIPTION_STARTED)
            emit(SUBSCRIPTION_BILLING_ISSUE)
        return found

    if previous.account_id != current.account_id:
        emit(SUBSCRIPTION_TRANSFERRED, from_account_id=str(previous.account_id))
    was_live = previous.status in LIVE_STATUSES
    is_live = current.status in LIVE_STATUSES
    if is_live and not was_live:
        # Never paid (incomplete), or ended and bought again under the same store id.
        emit(SUBSCRIPTION_STARTED)
    elif is_live and was_live:
        if previous.product != current.product:
            emit(SUBSCRIPTION_PLAN_CHANGED, previous_product=previous.product)
        elif current.status not in BILLING_ISSUE_STATUSES and (
            _period_moved_forward(previous, current) or previous.status in BILLING_ISSUE_STATUSES
        ):
            # Stripe moves the period when it bills, before the payment succeeds: a recovery from a
            # failed payment is the renewal, even when the period end does not move again.
            emit(SUBSCRIPTION_RENEWED, previous_status=previous.status.value)
        if previous.will_renew and not current.will_renew:
            emit(SUBSCRIPTION_WILL_NOT_RENEW)
        elif current.will_renew and not previous.will_renew:
            emit(SUBSCRIPTION_WILL_RENEW)
    if current.status in BILLING_ISSUE_STATUSES and previous.status not in BILLING_ISSUE_STATUSES:
        emit(SUBSCRIPTION_BILLING_ISSUE)
    if current.status is SubscriptionStatus.EXPIRED and previous.status is not SubscriptionStatus.EXPIRED:
        emit(SUBSCRIPTION_EXPIRED)
    elif current.status is SubscriptionStatus.REVOKED and previous.status is not SubscriptionStatus.REVOKED:
        emit(SUBSCRIPTION_REFUNDED)
    return found


def _period_moved_forward(previous: SubscriptionState, current: SubscriptionState) -> bool:
    if previous.current_period_end is None or current.current_period_end is None:
        return False
    return current.current_period_end > previous.current_period_end
