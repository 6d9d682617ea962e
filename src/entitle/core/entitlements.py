"""The entitlement engine: (subscriptions, purchases, grants, catalog, now) -> one answer per entitlement.

This is the decision every client relies on, so it is a pure function with no clock, database or vendor:
the services feed it stored rows and keep what it returns.

An entitlement is active while any source grants it: a subscription in an entitling status whose period
(or store grace period) has not ended, a one-time purchase that stands (a lifetime unlock, or a pass
within its days; `core.purchases`), or a promotional grant that has started, has not expired and has
not been revoked. When several sources grant it, the answer reports one, chosen so that the client shows
what the person owns and manages: a lifetime purchase (nothing outlasts it), then a renewing paid
subscription, then a paid one that will lapse or a pass, then a promotional grant; among equals the one
that lasts longest, then a fixed order on store and id so that the answer never depends on the order rows
came back in. Two or more paid subscriptions for the same entitlement, in one store or in two, are
reported as `duplicate_subscriptions`, and so is any paid subscription beside a purchase that grants the
same entitlement: the person pays twice for one thing, and since Apple purchases cannot be refused (and a
second web subscription can still be made outside entitle, in Stripe's dashboard or portal), the
duplicate is surfaced instead.

Each answer carries `recheck_at`, the next moment time alone can change it (an active source ends, a
scheduled grant starts); a stored answer is good until then, so expiry needs no background job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from entitle.core.catalog import Catalog
from entitle.core.purchases import PurchaseState, purchase_ends_at, purchase_entitles
from entitle.core.subscriptions import ENTITLING_STATUSES, Store, SubscriptionState, SubscriptionStatus

APP_STORE_MANAGEMENT_URL = "https://apps.apple.com/account/subscriptions"
STRIPE_PORTAL_PATH = "/v1/billing/stripe/portal"

# Preference among sources that grant the same entitlement; lower wins.
_LIFETIME = 0
_RENEWING_PAID = 1
_LAPSING_PAID = 2
_PROMOTIONAL = 3

# What kind of source an answer reports (`source` in the answer).
SOURCE_SUBSCRIPTION = "subscription"
SOURCE_PURCHASE = "purchase"
SOURCE_GRANT = "grant"


@dataclass(frozen=True)
class Grant:
    """A promotional grant of one entitlement, given by the app's team rather than bought."""

    id: str
    entitlement: str
    expires_at: datetime
    starts_at: datetime | None = None
    revoked_at: datetime | None = None

    def is_in_force(self, now: datetime) -> bool:
        started = self.starts_at is None or self.starts_at <= now
        revoked = self.revoked_at is not None and self.revoked_at <= now
        return started and not revoked and now < self.expires_at


@dataclass(frozen=True, order=True)
class SubscriptionRef:
    store: Store
    store_subscription_id: str

    def to_json(self) -> dict[str, str]:
        return {"store": self.store.value, "id": self.store_subscription_id}


@dataclass(frozen=True)
class EntitlementAnswer:
    entitlement: str
    active: bool
    store: Store | None = None
    product: str | None = None
    expires_at: datetime | None = None
    will_renew: bool = False
    management_url: str | None = None
    # `subscription`, `purchase` or `grant`; None when inactive.
    source: str | None = None
    # The store subscription id, store purchase id or grant id of the reported source.
    source_id: str | None = None
    duplicate_subscriptions: tuple[SubscriptionRef, ...] = ()
    # The next moment time alone can change this answer; None when only new data can.
    recheck_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The answer as `GET /v1/me/entitlements` shows it for this entitlement."""
        return {
            "active": self.active,
            "source": self.source,
            "store": self.store.value if self.store is not None else None,
            "product": self.product,
            "expires_at": isoformat(self.expires_at),
            "will_renew": self.will_renew,
            "management_url": self.management_url,
            "duplicate_subscriptions": [ref.to_json() for ref in self.duplicate_subscriptions],
        }


def isoformat(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with a `Z`, the form both clients parse without a custom formatter."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def subscription_ends_at(state: SubscriptionState) -> datetime | None:
    """When the subscription stops granting access, if nothing new is heard from the store."""
    if state.status is SubscriptionStatus.IN_GRACE_PERIOD and state.grace_period_ends_at is not None:
        return state.grace_period_ends_at
    return state.current_period_end


def subscription_entitles(state: SubscriptionState, now: datetime) -> bool:
    if state.status not in ENTITLING_STATUSES:
        return False
    ends_at = subscription_ends_at(state)
    return ends_at is None or now < ends_at


def management_url(store: Store, public_url: str) -> str | None:
    """Where the person manages a subscription from this store; promotional grants have no such place."""
    if store is Store.APP_STORE:
        return APP_STORE_MANAGEMENT_URL
    if store is Store.STRIPE:
        return public_url.rstrip("/") + STRIPE_PORTAL_PATH
    return None


@dataclass(frozen=True)
class _Source:
    rank: int
    store: Store
    source_id: str
    product: str | None
    expires_at: datetime | None
    will_renew: bool
    kind: str = SOURCE_SUBSCRIPTION

    def sort_key(self) -> tuple[int, int, float, str, str]:
        # Longest-lasting first; a source with no end outlasts every dated one.
        lasting = (0, 0.0) if self.expires_at is None else (1, -self.expires_at.timestamp())
        return (self.rank, *lasting, self.store.value, self.source_id)


def compute_entitlements(
    subscriptions: Iterable[SubscriptionState],
    grants: Iterable[Grant],
    catalog: Catalog,
    now: datetime,
    *,
    public_url: str,
    purchases: Iterable[PurchaseState] = (),
) -> dict[str, EntitlementAnswer]:
    """One answer for every entitlement in the catalog, in catalog order."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    sources: dict[str, list[_Source]] = {key: [] for key in catalog.entitlements}
    paid: dict[str, list[SubscriptionRef]] = {key: [] for key in catalog.entitlements}
    upcoming: dict[str, list[datetime]] = {key: [] for key in catalog.entitlements}

    for state in subscriptions:
        if not subscription_entitles(state, now):
            continue
        source = _Source(
            rank=_RENEWING_PAID if state.will_renew else _LAPSING_PAID,
            store=state.store,
            source_id=state.store_subscription_id,
            product=state.product,
            expires_at=subscription_ends_at(state),
            will_renew=state.will_renew,
        )
        for key in catalog.entitlements_of(state.product):
            sources[key].append(source)
            paid[key].append(SubscriptionRef(state.store, state.store_subscription_id))

    bought: set[str] = set()
    for purchase in purchases:
        if not purchase_entitles(purchase, catalog, now):
            if purchase.revoked_at is None and now < purchase.purchased_at:
                for key in catalog.entitlements_of(purchase.product):
                    upcoming[key].append(purchase.purchased_at)
            continue
        ends_at = purchase_ends_at(purchase, catalog)
        source = _Source(
            rank=_LIFETIME if ends_at is None else _LAPSING_PAID,
            store=purchase.store,
            source_id=purchase.store_purchase_id,
            product=purchase.product,
            expires_at=ends_at,
            will_renew=False,
            kind=SOURCE_PURCHASE,
        )
        for key in catalog.entitlements_of(purchase.product):
            sources[key].append(source)
            bought.add(key)

    for grant in grants:
        if grant.entitlement not in sources:
            continue  # The entitlement was removed from the catalog; it entitles nothing now.
        if grant.is_in_force(now):
            sources[grant.entitlement].append(
                _Source(
                    _PROMOTIONAL,
                    Store.PROMOTIONAL,
                    grant.id,
                    None,
                    _grant_ends_at(grant),
                    False,
                    SOURCE_GRANT,
                )
            )
        elif grant.starts_at is not None and now < grant.starts_at and grant.is_in_force(grant.starts_at):
            upcoming[grant.entitlement].append(grant.starts_at)

    return {
        key: _answer(key, sources[key], paid[key], upcoming[key], public_url, bought=key in bought)
        for key in catalog.entitlements
    }


def _grant_ends_at(grant: Grant) -> datetime:
    if grant.revoked_at is not None and grant.revoked_at < grant.expires_at:
        return grant.revoked_at
    return grant.expires_at


def _answer(
    key: str,
    sources: list[_Source],
    paid: list[SubscriptionRef],
    upcoming: list[datetime],
    public_url: str,
    *,
    bought: bool,
) -> EntitlementAnswer:
    changes = [s.expires_at for s in sources if s.expires_at is not None] + upcoming
    recheck_at = min(changes) if changes else None
    if not sources:
        return EntitlementAnswer(entitlement=key, active=False, recheck_at=recheck_at)
    best = min(sources, key=_Source.sort_key)
    duplicates: tuple[SubscriptionRef, ...] = ()
    # Beside a purchase, even one subscription pays a second time for what is already owned.
    if len(set(paid)) > 1 or (bought and paid):
        duplicates = tuple(sorted(set(paid)))
    return EntitlementAnswer(
        entitlement=key,
        active=True,
        store=best.store,
        product=best.product,
        expires_at=best.expires_at,
        will_renew=best.will_renew,
        # A purchase has nothing to manage; the app shows a receipt, not a portal.
        management_url=management_url(best.store, public_url) if best.kind == SOURCE_SUBSCRIPTION else None,
        source=best.kind,
        source_id=best.source_id,
        duplicate_subscriptions=duplicates,
        recheck_at=recheck_at,
    )
