"""The operator's summary (`GET /v1/reports/summary`): who is subscribed now, what it is worth, what changed.

Two sources, each read with a few grouped queries so the cost follows the number of groups, not of
accounts:
- Now, from the stored state: active subscriptions by store and product (the entitlement engine's rule:
  an entitling status whose period, or grace period, has not ended), promotional grants in force, and
  MRR. A paying subscription (active, in grace, or set to end at the period end; not trialing) counts
  what it is paid, normalized to a month (a year is 1/12, a week 52/12). A Stripe one is priced from the
  catalog, whose prices entitle pushes to Stripe. The catalog holds no App Store prices (Apple sets them
  per country in App Store Connect), so an App Store one counts the price and currency of its own last
  transaction (StoreKit 2 signs `price` in milli-units and `currency`), over the period that
  transaction paid for (`purchaseDate` to `expiresDate`). A paying subscription with no price to read
  (a Stripe product not in the catalog, a transaction from before Apple added prices) is counted in
  `mrr_unpriced` instead of being given a price nobody set.
- History, from the account event log, bucketed by UTC day over the range: `subscription.started` is a
  new subscription, `subscription.expired` and `subscription.refunded` are churn, and the latter is a
  refund too. Trials come from the `trials` record (`services.access.trials`), so each counts once per account
  and entitlement, on the day the store says it began, whichever store gave it and however often it was
  reported; a trial converted is a `subscription.renewed` out of `trialing` into a paid status (not a
  trial moved later) of a subscription that is such a recorded trial. Refund amounts are known only for
  Stripe charges (`billing.refunded`); the App Store does not say how much it gave back.

- One-time revenue, from the `purchases` table, bucketed by the UTC day of the purchase: what each
  purchase paid less what was refunded of it since (so a day's figure drops when a refund comes later),
  nothing for one refunded or lost to a dispute in full; a Family Sharing member's copy pays nothing. A
  purchase whose store gave no price is counted in `one_time_unpriced`. It sits beside MRR, never in it.

Production and sandbox (Stripe test mode, the App Store's Sandbox) are never added together: a summary
covers one environment, production unless asked, and says which. An event written before events named
their environment counts as production; a trial is of its subscription's environment.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import BigInteger, Date, Select, and_, case, cast, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from entitle.client_input import check_window
from entitle.core import transitions
from entitle.core.catalog import Catalog, Interval
from entitle.core.currencies import minor_unit_digits
from entitle.core.entitlements import isoformat
from entitle.core.models.entitlements import PromotionalGrant, Subscription, Trial
from entitle.core.models.events import AccountEvent
from entitle.core.models.purchases import Purchase
from entitle.core.subscriptions import ENTITLING_STATUSES, Environment, Store, SubscriptionStatus
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
# App Store subscription durations in months, by their length in days (a week as 12/52 of a month, as
# for Stripe). A transaction's period is matched to the nearest, so a renewal charged a little before
# the previous period ended still reads as one month.
_APPLE_PERIODS = {
    Fraction(7): _MONTHS_PER_INTERVAL[Interval.WEEK],
    **{Fraction(36525, 1200) * months: Fraction(months) for months in (1, 2, 3, 6, 12)},
}
# The Sandbox renews faster (https://developer.apple.com/help/app-store-connect/test-in-app-purchases/
# overview-of-testing-in-sandbox): minutes per duration at Apple's default renewal rate.
_APPLE_SANDBOX_PERIODS = {
    Fraction(3): _MONTHS_PER_INTERVAL[Interval.WEEK],
    Fraction(5): Fraction(1),
    Fraction(10): Fraction(2),
    Fraction(15): Fraction(3),
    Fraction(30): Fraction(6),
    Fraction(60): Fraction(12),
}
_MINUTES_PER_DAY = 24 * 60
# Revocations that gave the money back in full, whatever `refunded_amount` says (Apple never says it).
MONEY_BACK_REVOCATIONS = ("refunded", "disputed")


def utc_day(dialect: str, moment: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a stored timestamp, as SQL: the one place date bucketing differs."""
    if dialect == "postgresql":
        # A literal, not a bound parameter, so the same expression in SELECT and GROUP BY compares equal.
        return cast(func.timezone(literal_column("'UTC'"), moment), Date)
    # SQLite stores UTC timestamps as naive ISO text; date() reads its first ten characters.
    return func.date(moment)


async def summary(
    db: AsyncSession,
    catalog: Catalog,
    start: date,
    end: date,
    environment: Environment = Environment.PRODUCTION,
) -> dict[str, Any]:
    """Actives, MRR and promotional grants now; new, churned, trials and refunds per day from start to end;
    of one environment's subscriptions and events."""
    now = utcnow()
    dialect = (await db.connection()).dialect.name
    active = await _active_now(db, catalog, now, environment)
    days, refunded = await _history(db, dialect, start, end, environment)
    daily = [{"date": day.isoformat(), **days[day]} for day in _each_day(start, end)]
    one_time = await _one_time(db, dialect, catalog, start, end, environment)
    return {
        "from": start.isoformat(),
        "to": end.isoformat(),
        "environment": environment.value,
        "as_of": isoformat(now),
        **active,
        "totals": {name: sum(day[name] for day in daily) for name in _COUNTED},
        "refunded": refunded,
        "daily": daily,
        **one_time,
    }


def _live_now(now: datetime, environment: Environment) -> ColumnElement[bool]:
    """The engine's rule (core.entitlements.subscription_entitles) as a WHERE clause, in one environment."""
    ends_at = case(
        (Subscription.status == SubscriptionStatus.IN_GRACE_PERIOD.value, Subscription.grace_period_ends_at),
        else_=Subscription.current_period_end,
    )
    return and_(
        Subscription.environment == environment.value,
        Subscription.status.in_([status.value for status in ENTITLING_STATUSES]),
        or_(ends_at.is_(None), ends_at > now),
    )


def active_query(
    now: datetime, environment: Environment = Environment.PRODUCTION
) -> Select[str, str | None, str, int]:
    """Live subscriptions now, counted by store, product and status (benchmarks print its plan)."""
    return (
        select(Subscription.store, Subscription.product, Subscription.status, func.count())
        .where(_live_now(now, environment))
        .group_by(Subscription.store, Subscription.product, Subscription.status)
    )


def app_store_prices_query(
    now: datetime, environment: Environment = Environment.PRODUCTION
) -> Select[str | None, int | None, int | None, str | None, int]:
    """Paying App Store subscriptions now, counted by their last transaction's currency, price (milli-units),
    minutes paid for and ownership: a few groups however many subscriptions."""
    def number(key: str) -> ColumnElement[int]:
        # Through text: PostgreSQL's JSON integer cast is 32-bit, and Apple's dates are in milliseconds.
        return cast(Subscription.raw[("transaction", key)].as_string(), BigInteger)

    paid = (
        select(
            Subscription.raw[("transaction", "currency")].as_string().label("currency"),
            number("price").label("price"),
            ((number("expiresDate") - number("purchaseDate")) // 60_000).label("minutes"),
            Subscription.raw[("transaction", "inAppOwnershipType")].as_string().label("ownership"),
        )
        .where(
            _live_now(now, environment),
            Subscription.store == Store.APP_STORE.value,
            Subscription.status.in_([status.value for status in PAYING_STATUSES]),
        )
        .subquery()
    )
    # Grouped outside: the JSON paths are bound parameters, which PostgreSQL cannot match across clauses.
    return select(paid.c.currency, paid.c.price, paid.c.minutes, paid.c.ownership, func.count()).group_by(
        paid.c.currency, paid.c.price, paid.c.minutes, paid.c.ownership
    )


async def _active_now(
    db: AsyncSession, catalog: Catalog, now: datetime, environment: Environment
) -> dict[str, Any]:
    rows = await db.execute(active_query(now, environment))
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
        elif status in PAYING_STATUSES and store != Store.APP_STORE.value:
            price = _monthly_price(catalog, store, product)
            if price is None:
                unpriced[store] = unpriced.get(store, 0) + count
            else:
                currency, amount = price
                mrr[currency] = mrr.get(currency, Fraction(0)) + amount * count
    app_store = await db.execute(app_store_prices_query(now, environment))
    for paid_in, milli, minutes, ownership, count in app_store.all():
        if ownership == "FAMILY_SHARED":
            continue  # the family member pays nothing: the organizer's own subscription is the revenue
        price = _apple_monthly_price(paid_in, milli, minutes, environment)
        if price is None:
            unpriced[Store.APP_STORE.value] += count
        else:
            code, amount = price
            mrr[code] = mrr.get(code, Fraction(0)) + amount * count
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
    if price.interval is None:
        return None
    per_month = Fraction(price.unit_amount) / (_MONTHS_PER_INTERVAL[price.interval] * price.interval_count)
    return price.currency, per_month


def _apple_monthly_price(
    currency: str | None, milli: int | None, minutes: int | None, environment: Environment
) -> tuple[str, Fraction] | None:
    """(currency, minor units per month) of an App Store transaction, when it carries a price and a period."""
    if not currency or milli is None or milli < 0 or minutes is None or minutes <= 0:
        return None
    code = currency.lower()
    # Apple's milli-units to the currency's minor units (what Stripe amounts and `mrr` are in):
    # 9990 USD is 999 cents, 1200000 JPY is 1200 yen.
    minor = Fraction(milli, 10 ** (3 - minor_unit_digits(code)))
    months = _apple_months(minutes, environment)
    return (code, minor / months) if months is not None else None


def _apple_months(minutes: int, environment: Environment) -> Fraction | None:
    """The App Store duration, in months, that a transaction covering `minutes` paid for."""
    if minutes < _MINUTES_PER_DAY:
        if environment is not Environment.SANDBOX:
            return None  # no production duration is shorter than a week
        table, length = _APPLE_SANDBOX_PERIODS, Fraction(minutes)
    else:
        table, length = _APPLE_PERIODS, Fraction(minutes, _MINUTES_PER_DAY)
    nearest = min(table, key=lambda known: abs(known - length) / known)
    return table[nearest]


def _in_environment(environment: Environment) -> ColumnElement[bool]:
    named = func.coalesce(AccountEvent.data["environment"].as_string(), Environment.PRODUCTION.value)
    return named == environment.value


async def _history(
    db: AsyncSession, dialect: str, start: date, end: date, environment: Environment
) -> tuple[defaultdict[date, dict[str, int]], dict[str, int]]:
    """Per UTC day, the counted lifecycle events; and the refunded Stripe amounts per currency."""
    since = datetime.combine(start, time(), UTC)
    until = datetime.combine(end + timedelta(days=1), time(), UTC)
    in_range = and_(
        AccountEvent.created_at >= since, AccountEvent.created_at < until, _in_environment(environment)
    )
    day = utc_day(dialect, AccountEvent.created_at)
    recorded_trial = (
        select(Trial.account_id)
        .where(
            Trial.account_id == AccountEvent.account_id,
            Trial.store == AccountEvent.data["store"].as_string(),
            Trial.store_subscription_id == AccountEvent.data["subscription_id"].as_string(),
        )
        .exists()
    )
    converted = case(
        (
            and_(
                AccountEvent.type == transitions.SUBSCRIPTION_RENEWED,
                AccountEvent.data["previous_status"].as_string() == SubscriptionStatus.TRIALING.value,
                AccountEvent.data["status"].as_string() != SubscriptionStatus.TRIALING.value,
                recorded_trial,
            ),
            1,
        ),
        else_=0,
    )
    # One pass over the range's events of four types, on ix_account_events_type_created.
    rows = await db.execute(
        select(AccountEvent.type, day, func.count(), func.sum(converted))
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
        elif type == transitions.SUBSCRIPTION_RENEWED:
            counts["trials_converted"] += int(trials or 0)
        else:
            counts["churned"] += count
            if type == transitions.SUBSCRIPTION_REFUNDED:
                counts["refunds"] += count
    for bucket, count in await _trials_started(db, dialect, since, until, environment):
        days[_as_date(bucket)]["trials_started"] += count
    return days, await _refunded_amounts(db, in_range)


async def _trials_started(
    db: AsyncSession, dialect: str, since: datetime, until: datetime, environment: Environment
) -> list[Any]:
    """Per UTC day, the trials that began: one per subscription that had one (its rows, one per
    entitlement it grants, are one trial), and never a second for an account and entitlement."""
    began = func.min(Trial.started_at)
    trials = (
        select(began.label("started_at"))
        .join(
            Subscription,
            and_(
                Subscription.store == Trial.store,
                Subscription.store_subscription_id == Trial.store_subscription_id,
            ),
        )
        .where(Trial.started_at < until, Subscription.environment == environment.value)
        .group_by(Trial.account_id, Trial.store, Trial.store_subscription_id)
        .having(began >= since)
        .subquery()
    )
    day = utc_day(dialect, trials.c.started_at)
    return list((await db.execute(select(day, func.count()).group_by(day))).all())


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


async def _one_time(
    db: AsyncSession, dialect: str, catalog: Catalog, start: date, end: date, environment: Environment
) -> dict[str, Any]:
    """One-time revenue per currency over the range and per day, with the purchases counted."""
    since = datetime.combine(start, time(), UTC)
    until = datetime.combine(end + timedelta(days=1), time(), UTC)
    # Every currency a one-time product is priced in shows, at 0 when nothing sold.
    revenue: dict[str, int] = {
        p.stripe.currency: 0 for p in catalog.products.values() if p.is_one_time and p.stripe is not None
    }
    counts: defaultdict[date, int] = defaultdict(int)
    per_day: defaultdict[date, dict[str, int]] = defaultdict(dict)
    unpriced = 0
    for bucket, currency, count, net, without_price in (
        await db.execute(one_time_query(dialect, since, until, environment))
    ).all():
        day = _as_date(bucket)
        counts[day] += count
        unpriced += int(without_price or 0)
        if currency is not None and net is not None:
            per_day[day][currency] = per_day[day].get(currency, 0) + int(net)
            revenue[currency] = revenue.get(currency, 0) + int(net)
    return {
        "one_time_revenue": dict(sorted(revenue.items())),
        "one_time_purchases": sum(counts.values()),
        "one_time_unpriced": unpriced,
        "one_time_daily": [
            {"date": day.isoformat(), "purchases": counts[day], "revenue": dict(sorted(per_day[day].items()))}
            for day in _each_day(start, end)
        ],
    }


def one_time_query(
    dialect: str, since: datetime, until: datetime, environment: Environment = Environment.PRODUCTION
) -> Select[Any, str | None, int, int | None, int]:
    """One-time purchases from `since` to `until`, per UTC day and currency: how many, what they brought
    in net of refunds, and how many carried no price."""
    day = utc_day(dialect, Purchase.purchased_at)
    currency = func.lower(Purchase.currency)
    priced = and_(Purchase.amount.is_not(None), Purchase.currency.is_not(None))
    lost = and_(Purchase.revoked_at.is_not(None), Purchase.revocation_reason.in_(MONEY_BACK_REVOCATIONS))
    net = case((lost, 0), else_=Purchase.amount - Purchase.refunded_amount)
    return (
        select(day, currency, func.count(), func.sum(net), func.sum(case((priced, 0), else_=1)))
        .where(
            Purchase.purchased_at >= since,
            Purchase.purchased_at < until,
            Purchase.environment == environment.value,
            Purchase.family_shared.is_(False),
        )
        .group_by(day, currency)
    )


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
