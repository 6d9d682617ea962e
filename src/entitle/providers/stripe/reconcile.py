"""Converge on Stripe's truth: re-read an object from Stripe and store what it says now.

Every webhook handler, the billing routes after a change, and `entitle sync stripe` end here. An
event is only a nudge naming what changed; its snapshot may be stale by the time we see it, so we
read the subscription again and store that read with the moment it was made (see `mapping.py` for
why the read time is the right vendor timestamp). Duplicates, reordering and late delivery then all
converge on the same final state: the last read wins, and the last read is the newest truth.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.catalog import Catalog
from entitle.core.models.accounts import Account
from entitle.core.models.entitlements import Subscription
from entitle.core.models.guest import GuestCheckout
from entitle.core.subscriptions import Store, SubscriptionSink, SubscriptionState, SubscriptionStatus
from entitle.core.transitions import LIVE_STATUSES
from entitle.db.types import utcnow
from entitle.errors import EntitleError
from entitle.providers.stripe.client import StripeGateway
from entitle.providers.stripe.errors import StripeObjectMissing
from entitle.providers.stripe.mapping import account_id_hint, is_guest_object, object_id, subscription_state
from entitle.providers.stripe.models import StripeCustomer

log = logging.getLogger(__name__)

_ENDED = frozenset({"canceled", "unpaid", "incomplete_expired"})
_LIVE_AND_PAID = frozenset(
    {SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING, SubscriptionStatus.CANCELED_AT_PERIOD_END}
)


# The stored columns a full sync compares with a listed subscription (`Reconciler.already_stored`).
_COMPARED = (
    "product",
    "store_product_id",
    "status",
    "current_period_end",
    "grace_period_ends_at",
    "payment_method",
    "will_renew",
    "environment",
    "store_customer_id",
)


def _essentials(state: SubscriptionState) -> tuple[Any, ...]:
    """What an event could change about a subscription, as the core sees it."""
    return (
        state.status,
        state.product,
        state.store_product_id,
        state.current_period_end,
        state.will_renew,
        state.store_customer_id,
        state.environment,
    )


@dataclass(frozen=True)
class Reconciler:
    """What converging needs: the gateway, the catalog, the grace rule and where states are stored."""

    gateway: StripeGateway
    catalog: Catalog
    grace_days: int
    sink: SubscriptionSink

    async def subscription(
        self,
        db: AsyncSession,
        subscription_id: str,
        *,
        fresh: dict[str, Any] | None = None,
        read_at: datetime | None = None,
    ) -> str:
        """Re-read `subscription_id` (or use `fresh`, requested at `read_at`), store it, return an outcome.

        The read time is taken when the request *starts*: Stripe's answer is at least as new as that
        moment, so a read that started later can never lose to one that started earlier, however
        long the earlier one took to answer (a billing route stores its answer outside the
        per-customer lock, so two reads of one subscription can overlap).
        """
        if fresh is None:
            read_at = utcnow()
            try:
                fresh = await self.gateway.retrieve_subscription(subscription_id)
            except StripeObjectMissing:
                return f"ignored: {subscription_id} does not exist at Stripe"
        elif read_at is None:
            raise ValueError("a subscription read elsewhere needs the moment its request started")
        customer_id = object_id(fresh.get("customer"))
        account_id = await self.account_for(db, customer_id, fresh)
        if account_id is None:
            return f"ignored: {subscription_id} belongs to a customer entitle did not create"
        refunded = False
        invoice_id = object_id(fresh.get("latest_invoice"))
        if fresh.get("status") in _ENDED and invoice_id:
            try:
                refunded = await self.gateway.latest_payment_refunded(invoice_id)
            except EntitleError as exc:
                # Refunded or not, an ended subscription grants nothing: the refund only picks the
                # status's name (revoked or expired), so it never holds up ending the access.
                log.warning("could not tell whether %s was refunded: %s", invoice_id, exc.code)
        state = subscription_state(
            fresh,
            account_id=account_id,
            catalog=self.catalog,
            read_at=read_at,
            grace_days=self.grace_days,
            refunded=refunded,
        )
        applied = await self.sink.apply(db, state, now=read_at)
        return f"{subscription_id}: {state.status.value}" + ("" if applied else " (newer state kept)")

    async def customer(self, db: AsyncSession, customer_id: str) -> str:
        """Re-read every subscription of `customer_id` that Stripe or our table knows."""
        listed: list[tuple[dict[str, Any], datetime]] = []
        try:
            listed = [read async for read in self.gateway.iter_subscriptions(customer=customer_id)]
        except EntitleError as exc:
            # The list only finds subscriptions we have not stored yet. Stripe may refuse to list a
            # deleted customer's, and a Stripe-compatible server may not list at all; the ones we
            # know are re-read one by one below, and only a failure of those leaves the event to retry.
            log.warning("could not list the subscriptions of %s: %s", customer_id, exc.code)
        outcomes = [await self.subscription(db, sub["id"], fresh=sub, read_at=at) for sub, at in listed]
        seen = {sub["id"] for sub, _ in listed}
        known = await db.scalars(
            select(Subscription.store_subscription_id).where(
                Subscription.store == Store.STRIPE.value, Subscription.store_customer_id == customer_id
            )
        )
        for subscription_id in set(known.all()) - seen:
            outcomes.append(await self.subscription(db, subscription_id))
        return "; ".join(outcomes) or f"{customer_id}: no subscriptions"

    async def reflects(self, db: AsyncSession, subscription_id: str, obj: dict[str, Any]) -> bool:
        """Whether what is stored for `subscription_id` already says all that event object `obj` could
        make it say, so a read would change nothing the event is about.

        Safe whichever is newer: if the event is stale, its snapshot equal to the stored state changes
        nothing; if it is newer and equal, there is nothing to change; any later change at Stripe sends an
        event of its own, whose snapshot differs and is read. Only a renewal's two readers are judged: a
        paid invoice that is the subscription's latest, and a live subscription's own snapshot.
        """
        stored = await self.sink.stored(db, Store.STRIPE, subscription_id)
        if stored is None or stored.status not in _LIVE_AND_PAID:
            return False
        if obj.get("object") == "invoice":
            latest = object_id(stored.raw.get("latest_invoice"))
            return obj.get("status") == "paid" and latest == obj.get("id")
        if obj.get("object") != "subscription" or obj.get("status") not in ("active", "trialing"):
            return False
        try:
            seen = subscription_state(
                obj,
                account_id=stored.account_id,
                catalog=self.catalog,
                read_at=stored.vendor_updated_at,
                grace_days=self.grace_days,
            )
        except (KeyError, TypeError, ValueError):
            return False
        return _essentials(seen) == _essentials(stored) and object_id(
            obj.get("default_payment_method")
        ) == object_id(stored.raw.get("default_payment_method"))

    async def already_stored(
        self, db: AsyncSession, subs: Sequence[Mapping[str, Any]], *, read_at: datetime
    ) -> set[str]:
        """The ids among `subs` (one list page, read at `read_at`) whose stored state already says all
        that the page says, so storing them again would change nothing.

        One query per page instead of a transaction per subscription: a full sync mostly finds nothing
        to change, and at 25 pages a second a page has 40 ms. An ended subscription stored as ended,
        with the same latest invoice, is not asked again whether that invoice was refunded (a request
        per subscription, 40 minutes of Stripe's pace for 60,000 of them): a later refund sends its own
        `charge.refunded` event.
        """
        ids = [str(sub["id"]) for sub in subs]
        rows = await db.execute(
            select(
                Subscription.store_subscription_id,
                Subscription.account_id,
                Subscription.vendor_updated_at,
                Subscription.raw["latest_invoice"].as_string(),
                *(Subscription.__table__.c[name] for name in _COMPARED),
            ).where(Subscription.store == Store.STRIPE.value, Subscription.store_subscription_id.in_(ids))
        )
        stored = {row[0]: row for row in rows.all()}
        unchanged: set[str] = set()
        for sub in subs:
            row = stored.get(str(sub["id"]))
            if row is None:
                continue
            if row.vendor_updated_at > read_at:
                unchanged.add(row[0])  # a newer read is stored; this one would be ignored anyway
                continue
            refunded = False
            if sub.get("status") in _ENDED:
                ended = (SubscriptionStatus.EXPIRED.value, SubscriptionStatus.REVOKED.value)
                if row.status not in ended or row[3] != object_id(sub.get("latest_invoice")):
                    continue
                refunded = row.status == SubscriptionStatus.REVOKED.value
            try:
                state = subscription_state(
                    sub,
                    account_id=row.account_id,
                    catalog=self.catalog,
                    read_at=read_at,
                    grace_days=self.grace_days,
                    refunded=refunded,
                )
            except (KeyError, TypeError, ValueError):
                continue
            values = {
                "product": state.product,
                "store_product_id": state.store_product_id,
                "status": state.status.value,
                "current_period_end": state.current_period_end,
                "grace_period_ends_at": state.grace_period_ends_at,
                "payment_method": state.payment_method,
                "will_renew": state.will_renew,
                "environment": state.environment.value,
                "store_customer_id": state.store_customer_id,
            }
            if all(getattr(row, name) == values[name] for name in _COMPARED):
                unchanged.add(row[0])
        return unchanged

    async def account_for(
        self,
        db: AsyncSession,
        customer_id: str | None,
        obj: dict[str, Any] | None = None,
        *,
        ask_stripe: bool = True,
    ) -> uuid.UUID | None:
        """The account behind a Stripe customer: our table first, then what we wrote at Stripe.

        `ask_stripe=False` never reads the customer from Stripe: for a handler that runs before its batch's
        reserved read (the pacer allows no other request first), and the read that follows asks anyway."""
        if customer_id is None:
            return None
        found = await db.scalar(
            select(StripeCustomer.account_id).where(StripeCustomer.customer_id == customer_id)
        )
        if found is not None:
            return found
        # A customer we replaced (deleted at Stripe, then a new one) still owns its old subscriptions.
        found = await db.scalar(
            select(Subscription.account_id)
            .where(Subscription.store == Store.STRIPE.value, Subscription.store_customer_id == customer_id)
            .limit(1)
        )
        if found is not None:
            return found
        # A guest's customer (paid before the account existed) belongs to the account that claimed it.
        found = await db.scalar(
            select(GuestCheckout.claimed_account_id)
            .where(
                GuestCheckout.store == Store.STRIPE.value,
                GuestCheckout.store_customer_id == customer_id,
                GuestCheckout.claimed_account_id.is_not(None),
            )
            .order_by(GuestCheckout.claimed_at.desc())
            .limit(1)
        )
        if found is not None:
            return found
        # A guest's objects name no account until one claims them (looked up above): nothing to ask Stripe.
        if is_guest_object(obj or {}):
            return None
        # Created at Stripe but our row was lost (a crash between the two): the metadata we wrote says.
        hint = account_id_hint(obj or {})
        if hint is None and not ask_stripe:
            return None
        if hint is None:
            try:
                customer = await self.gateway.retrieve_customer(customer_id)
            except StripeObjectMissing:
                return None
            hint = account_id_hint(customer)
        if hint is not None and await db.get(Account, hint) is not None:
            return hint
        return None


async def mark_customer_deleted(db: AsyncSession, customer_id: str, *, now: datetime) -> bool:
    result = await db.execute(
        update(StripeCustomer)
        .where(StripeCustomer.customer_id == customer_id, StripeCustomer.deleted_at.is_(None))
        .values(deleted_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def live_subscriptions(db: AsyncSession, account_id: uuid.UUID) -> list[Subscription]:
    """The account's Stripe subscriptions a person can still change, cancel or resume, oldest first.

    An incomplete one (a first payment never made) is an attempt, not yet a subscription: it is not here.
    """
    rows = await db.scalars(
        select(Subscription)
        .where(
            Subscription.account_id == account_id,
            Subscription.store == Store.STRIPE.value,
            Subscription.status.in_([s.value for s in LIVE_STATUSES]),
        )
        .order_by(Subscription.created_at, Subscription.store_subscription_id)
    )
    return list(rows.all())
