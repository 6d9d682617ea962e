"""The operator's summary (`GET /v1/reports/summary`): who is subscribed now, what it is worth, what changed.

Two sources, each read with a few grouped queries so the cost follows the number of groups, not of
accounts:
- Now, from the stored state: active subscriptions by store and product (the entitlement engine's rule:
  an entitling status whose period, or grace period, has not ended), promotional grants in force, and
  MRR. MRR is priced from the catalog, the only prices entitle knows: a paying Stripe subscription
  (active, in grace, or set to end at the period end; not trialing) counts its product's Stripe price,
  normalized to a month (a year is 1/12, a week 52/12). The catalog holds no App Store prices (Apple
  sets them per country in App Store Connect), so App Store subscriptions, and any whose product is not
  in the catalog, are counted in `mrr_unpriced` instead of being given a price nobody set.
- History, from the account event log, bucketed by UTC day over the range: `subscription.started` is a
  new subscription (a trial when it started `trialing`), `subscription.renewed` from `trialing` is a
  trial converted, `subscription.expired` and `subscription.refunded` are churn, and the latter is a
  refund too. Refund amounts are known only for Stripe charges (`billing.refunded`); the App Store does
  not say how much it gave back.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import Date, Select, and_, case, cast, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from entitle.client_input import check_window
from entitle.core import transitions
from entitle.core.catalog import Catalog, Interval
from entitle.core.entitlements import isoformat
from entitle.core.models.entitlements import PromotionalGrant, Subscription
from entitle.core.models.events import AccountEvent
from entitle.core.subscriptions import ENTITLING_STATUSES, Store, SubscriptionStatus
from entitle.db.types import utcnow
from entitle.errors import EntitleError
from entitle.providers.stripe.handlers import REFUNDED as STRIPE_CHARGE_REFUNDED

# The longest range one summary covers: a year, leap day included.
MAX_RANGE_DAYS = 366
# The range when none is asked for: the last 30 days, today included.
DEFAULT_RANGE_DAYS = 30
# Stores a person pays in; promotional grants are reported apart.
STORES = tuple(store.value for store in Store if store is not Store.PROMOTIONAL)
# A subscription whose store product is not in the catalog is listed under this key (a catalog product
# key cannot start with "_", so it never collides with one).
NOT_IN_CATALOG = "_not_in_catalog"
# Statuses in which a live subscription is being paid for (a trial is live but not paying).
PAYING_STATUSES = frozenset(ENTITLING_STATUSES - {SubscriptionStatus.TRIALING})
# One calendar month's share of a billing interval of one unit.
_MONTHS_PER_INTERVAL = {
    Interval.DAY: Fraction(12, 365),
    Interval.WEEK: Fraction(12, 52),
    Interval.MONTH: Fraction(1),
    Interval.YEAR: Fraction(12),
}
_COUNTED = ("new", "churned", "trials_started", "trials_converted", "refunds")


def utc_day(dialect: str, moment: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a stored timestamp, as SQL: the one place date bucketing differs."""
    if dialect == "postgresql":
        # A literal, not a bound parameter, so the same expression in SELECT and GROUP BY compares equal.
        return cast(func.timezone(literal_column("'UTC'"), moment), Date)
    # SQLite stores UTC timestamps as naive ISO text; date() reads its first ten characters.
    return func.date(moment)


async def summary(db: AsyncSession, catalog: Catalog, start: date, end: date) -> dict[str, Any]:
    """Actives, MRR and promotional grants now; new, churned, trials and refunds per day from start to end."""
    now = utcnow()
    dialect = (await db.connection()).dialect.name
    active = await _active_now(db, catalog, now)
    days, refunded = await _history(db, dialect, start, end)
    daily = [{"date": day.isoformat(), **days[day]} for day in _each_day(start, end)]
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "as_of": isoformat(now),
        **active,
        "totals": {name: sum(day[name] for day in daily) for name in _COUNTED},
        "refunded": refunded,
        "daily": daily,
    }


def active_query(now: datetime) -> Select[str, str | None, str, int]:
    """Live subscriptions now, counted by store, product and status (benchmarks print its plan)."""
    ends_at = case(
        (Subscription.status == SubscriptionStatus.IN_GRACE_PERIOD.value, Subscription.grace_period_ends_at),
        else_=Subscription.current_period_end,
    )
    # The engine's rule (core.entitlements.subscription_entitles), as a WHERE clause.
    entitling = and_(
        Subscription.status.in_([status.value for status in ENTITLING_STATUSES]),
        or_(ends_at.is_(None), ends_at > now),
    )
    return (
        select(Subscription.store, Subscription.product, Subscription.status, func.count())
        .where(entitling)
        .group_by(Subscription.store, Subscription.product, Subscription.status)
    )


async def _active_now(db: AsyncSession, catalog: Catalog, now: datetime) -> dict[str, Any]:
    rows = await db.execute(active_query(now))
    by_product: dict[str, dict[str, int]] = {store: {} for store in STORES}
    trialing = 0
    mrr: dict[str, Fraction] = {p.stripe.currency: Fraction(0) for p in catalog.products.values() if p.stripe}
    unpriced: dict[str, int] = {store: 0 for store in STORES}
    for store, product, status, count in rows.all():
        products = by_product.setdefault(store, {})
        key = product or NOT_IN_CATALOG
        products[key] = products.get(key, 0) + count
        if status == SubscriptionStatus.TRIALING.value:
            trialing += count
        elif status in PAYING_STATUSES:
            price = _monthly_price(catalog, store, product)
            if price is None:
                unpriced[store] = unpriced.get(store, 0) + count
            else:
                currency, amount = price
                mrr[currency] = mrr.get(currency, Fraction(0)) + amount * count
    grants = await db.execute(
        select(PromotionalGrant.entitlement, func.count())
        .where(
            or_(PromotionalGrant.starts_at.is_(None), PromotionalGrant.starts_at <= now),
            or_(PromotionalGrant.revoked_at.is_(None), PromotionalGrant.revoked_at > now),
            PromotionalGrant.expires_at > now,
        )
        .group_by(PromotionalGrant.entitlement)
    )
    return {
        "active": {
            "total": sum(sum(products.values()) for products in by_product.values()),
            "trialing": trialing,
            "by_store": {store: sum(products.values()) for store, products in by_product.items()},
            "by_product": {store: dict(sorted(products.items())) for store, products in by_product.items()},
            "promotional": dict(sorted((entitlement, count) for entitlement, count in grants.all())),
        },
        # Rounded once per currency, half up, after summing exact fractions.
        "mrr": {currency: int(amount + Fraction(1, 2)) for currency, amount in sorted(mrr.items())},
        "mrr_unpriced": unpriced,
    }


def _monthly_price(catalog: Catalog, store: str, product_key: str | None) -> tuple[str, Fraction] | None:
    """(currency, minor units per month) of one subscription, when the catalog prices it in its store."""
    product = catalog.product(product_key) if product_key is not None else None
    if store != Store.STRIPE.value or product is None or product.stripe is None:
        return None
    price = product.stripe
    per_month = Fraction(price.unit_amount) / (_MONTHS_PER_INTERVAL[price.interval] * price.interval_count)
    return price.currency, per_month


async def _history(
    db: AsyncSession, dialect: str, start: date, end: date
) -> tuple[defaultdict[date, dict[str, int]], dict[str, int]]:
    """Per UTC day, the counted lifecycle events; and the refunded Stripe amounts per currency."""
    since = datetime.combine(start, time(), UTC)
    until = datetime.combine(end + timedelta(days=1), time(), UTC)
    in_range = and_(AccountEvent.created_at >= since, AccountEvent.created_at < until)
    day = utc_day(dialect, AccountEvent.created_at)
    trial = case(
        (
            and_(
                AccountEvent.type == transitions.SUBSCRIPTION_STARTED,
                AccountEvent.data["status"].as_string() == SubscriptionStatus.TRIALING.value,
            ),
            1,
        ),
        (
            and_(
                AccountEvent.type == transitions.SUBSCRIPTION_RENEWED,
                AccountEvent.data["previous_status"].as_string() == SubscriptionStatus.TRIALING.value,
            ),
            1,
        ),
        else_=0,
    )
    # One pass over the range's events of four types, on ix_account_events_type_created.
    rows = await db.execute(
        select(AccountEvent.type, day, func.count(), func.sum(trial))
        .where(
            AccountEvent.type.in_(
                [
                    transitions.SUBSCRIPTION_STARTED,
                    transitions.SUBSCRIPTION_RENEWED,
                    transitions.SUBSCRIPTION_EXPIRED,
                    transitions.SUBSCRIPTION_REFUNDED,
                ]
            ),
            in_range,
        )
        .group_by(AccountEvent.type, day)
    )
    days: defaultdict[date, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_COUNTED, 0))
    for type, bucket, count, trials in rows.all():
        counts = days[_as_date(bucket)]
        if type == transitions.SUBSCRIPTION_STARTED:
            counts["new"] += count
            counts["trials_started"] += int(trials or 0)
        elif type == transitions.SUBSCRIPTION_RENEWED:
            counts["trials_converted"] += int(trials or 0)
        else:
            counts["churned"] += count
            if type == transitions.SUBSCRIPTION_REFUNDED:
                counts["refunds"] += count
    return days, await _refunded_amounts(db, in_range)


async def _refunded_amounts(db: AsyncSession, in_range: ColumnElement[bool]) -> dict[str, int]:
    """Money refunded on Stripe charges, per currency.

    Stripe reports a charge's refunded amount so far (`amount_refunded`), so each charge counts once,
    with the largest amount any of its refunds in the range reported.
    """
    currency = AccountEvent.data["currency"].as_string()
    charge = AccountEvent.data["charge"].as_string()
    per_charge = (
        select(
            currency.label("currency"),
            func.max(AccountEvent.data["amount_refunded"].as_integer()).label("amount"),
        )
        .where(AccountEvent.type == STRIPE_CHARGE_REFUNDED, in_range)
        .group_by(currency, charge)
        .subquery()
    )
    rows = await db.execute(
        select(per_charge.c.currency, func.sum(per_charge.c.amount))
        .where(per_charge.c.currency.is_not(None))
        .group_by(per_charge.c.currency)
    )
    return {str(code): int(total or 0) for code, total in sorted(rows.all())}


def _as_date(value: Any) -> date:
    """A day bucket as the driver returns it: a date on PostgreSQL, ISO text on SQLite."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _each_day(start: date, end: date) -> list[date]:
    return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]


def default_range(today: date) -> tuple[date, date]:
    """The last DEFAULT_RANGE_DAYS days, today included."""
    return today - timedelta(days=DEFAULT_RANGE_DAYS - 1), today


_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        if not _ISO_DAY.match(value):
            raise ValueError(value)
        day = date.fromisoformat(value)
    except ValueError:
        raise EntitleError(f"`{name}` must be a date written YYYY-MM-DD.", code="invalid_date") from None
    return check_window(day, name)


def report_range(start_text: str | None, end_text: str | None, today: date) -> tuple[date, date]:
    """The asked range, or the last 30 days; refused when backwards or longer than a year."""
    start, end = _day(start_text, "from"), _day(end_text, "to")
    default_start, default_end = default_range(end or today)
    start, end = start or default_start, end or default_end
    if start > end:
        raise EntitleError("`from` must not be after `to`.", code="invalid_date_range")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise EntitleError(
            f"A report covers at most {MAX_RANGE_DAYS} days; ask for a shorter range.",
            code="date_range_too_long",
        )
    return start, end
