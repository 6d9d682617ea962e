"""The team channel: a Slack-compatible URL told of the business's moments, in a line each.

The moments are read from the account event log the services already write (a new subscriber is
`subscription.started`, a cancellation `subscription.will_not_renew`, a refund `payment.refunded`, a
billing problem `subscription.billing_issue`), so nothing new is written when they happen and the log is
the queue: the worker walks it behind a cursor, the way `GET /v1/events` does (only events SETTLE old,
so a transaction that commits late is not passed over). The cursor and a lease live in `alerts_sent`
(causes `team_channel:cursor` and `team_channel:lease`), claimed with one conditional UPDATE, so several
workers never tell the same moment twice at once. A message the channel refuses is retried with backoff
(the lease's time is the next attempt) and given up after MAX_ATTEMPTS, with an operator alert.

The account's email is masked (`j•••@example.com`): a team channel is read by more people than the
dashboard, and Slack keeps what it is sent; the domain and first letter are enough to recognise a
customer, and the dashboard has the rest. No secret, token or id from a store ever goes into the line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import httpx
from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from entitle.core import events, transitions
from entitle.core.models.accounts import Account
from entitle.core.models.events import AccountEvent, AlertSent
from entitle.db.types import utcnow
from entitle.services.delivery.alerts import INSERT_IGNORE, alerter
from entitle.services.delivery.events_feed import SETTLE

if TYPE_CHECKING:
    from entitle.context import AppContext

log = logging.getLogger(__name__)

# Each switchable moment and the account event types that are it.
MOMENTS: dict[str, tuple[str, ...]] = {
    "new_subscriber": (transitions.SUBSCRIPTION_STARTED,),
    "cancellation": (transitions.SUBSCRIPTION_WILL_NOT_RENEW,),
    # The money going back, whichever product it paid for (one line per refund, with the amount).
    "refund": (events.PAYMENT_REFUNDED,),
    "billing_problem": (transitions.SUBSCRIPTION_BILLING_ISSUE,),
}
BATCH = 20
# A moment older than this is news no more: a channel switched off for a while is not flooded when it
# comes back.
STALE = timedelta(days=1)
LEASE = timedelta(minutes=2)
FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
# About a day of retries; past that the line is stale and the channel is plainly broken (alerted).
MAX_ATTEMPTS = 30
SEND_TIMEOUT = httpx.Timeout(10.0, connect=5.0)

_ALERTS = cast(Table, AlertSent.__table__)
CURSOR = "team_channel:cursor"
LEASE_CAUSE = "team_channel:lease"


@dataclass(frozen=True)
class Moment:
    created_at: datetime
    type: str
    email: str | None
    data: dict[str, Any]


def event_types(enabled: list[str]) -> list[str]:
    return [type for moment in enabled for type in MOMENTS.get(moment, ())]


async def tell_team(context: AppContext, *, now: datetime | None = None) -> int:
    """Post the moments that happened since the last pass; returns how many the channel took."""
    url = context.settings.team_channel_url
    types = event_types(context.settings.team_channel_events)
    if url is None or not types:
        return 0
    now = now or utcnow()
    async with context.database.transaction() as db:
        connection = await db.connection()
        failures = await _claim(connection, now)
        if failures is None:
            return 0
        # The row exists: `_claim` inserted it.
        cursor = cast(
            datetime, await connection.scalar(select(_ALERTS.c.last_sent_at).where(_ALERTS.c.cause == CURSOR))
        )
        rows = await db.execute(
            select(AccountEvent.created_at, AccountEvent.type, Account.email, AccountEvent.data)
            .join(Account, Account.id == AccountEvent.account_id)
            .where(
                AccountEvent.created_at > max(cursor, now - STALE),
                AccountEvent.created_at <= now - SETTLE,
                AccountEvent.type.in_(types),
            )
            .order_by(AccountEvent.created_at, AccountEvent.id)
            .limit(BATCH)
        )
        moments = [Moment(*row) for row in rows.all()]
    told = 0
    # No transaction is held while the channel answers; the lease keeps other workers out meanwhile.
    for moment in moments:
        error = await _post(
            context.http, url.get_secret_value(), {"text": line(moment, context.settings.app_name)}
        )
        if error is not None:
            failures += 1
            if failures < MAX_ATTEMPTS:
                log.warning("the team channel refused (attempt %d): %s", failures, error)
                await _release(context, failures=failures, not_before=now + _backoff(failures))
                return told
            await alerter(context).alert(
                "team_channel_refused", f"the team channel refused {MAX_ATTEMPTS} times; last: {error}"
            )
        failures = 0
        told += error is None
        await _advance(context, moment.created_at)
    if len(moments) < BATCH:
        # Nothing more is due: the cursor moves up to now, so a moment switched on later starts from here.
        await _advance(context, now - SETTLE)
    await _release(context, failures=0, not_before=now)
    return told


def line(moment: Moment, app_name: str) -> str:
    """The channel's one line for a moment: who (masked), what, for how much."""
    who = mask_email(moment.email)
    data = moment.data
    product = str(data.get("product") or "a product")
    store = _STORES.get(str(data.get("store")), "")
    where = f" ({store})" if store else ""
    if moment.type == transitions.SUBSCRIPTION_STARTED:
        text = f"New subscriber: {who} started {product}{where}"
    elif moment.type == transitions.SUBSCRIPTION_WILL_NOT_RENEW:
        ends = _day(data.get("expires_at"))
        text = f"Cancellation: {who} turned off renewal of {product}{where}; it ends {ends}"
    elif moment.type == transitions.SUBSCRIPTION_BILLING_ISSUE:
        text = f"Billing problem: a renewal payment of {product} by {who} failed{where}"
    else:
        amount = _money(data.get("amount_refunded"), data.get("currency"))
        text = f"Refund: {amount} to {who} for {product}{where}"
    if data.get("environment") == "sandbox":
        text += " [test]"
    return f"{app_name}: {text}"


def mask_email(email: str | None) -> str:
    if not email or "@" not in email:
        return "an account without email"
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}\u2022\u2022\u2022@{domain}"


_STORES = {"stripe": "Stripe", "app_store": "App Store", "google_play": "Google Play"}
# Currencies without minor units (Stripe's list), shown as they are.
_ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())


def _money(amount: Any, currency: Any) -> str:
    if not isinstance(amount, int) or not isinstance(currency, str) or not currency:
        return "money"
    code = currency.lower()
    value = str(amount) if code in _ZERO_DECIMAL else f"{amount / 100:.2f}"
    return f"{value} {code.upper()}"


def _day(moment: Any) -> str:
    return f"on {str(moment)[:10]}" if moment else "at the end of the period"


async def _claim(connection: AsyncConnection, now: datetime) -> int | None:
    """The lease for this pass (None when another worker holds it or a retry is not yet due), with the
    failures so far of the moment at the cursor."""
    insert = INSERT_IGNORE[connection.dialect.name]
    # First pass: the channel is told what happens from now on, not the history before it was set.
    await connection.execute(insert, {"cause": CURSOR, "last_sent_at": now - SETTLE, "suppressed": 0})
    await connection.execute(insert, {"cause": LEASE_CAUSE, "last_sent_at": now, "suppressed": 0})
    claimed = (
        await connection.execute(
            update(_ALERTS)
            .where(_ALERTS.c.cause == LEASE_CAUSE, _ALERTS.c.last_sent_at <= now)
            .values(last_sent_at=now + LEASE)
            .returning(_ALERTS.c.suppressed)
        )
    ).first()
    return None if claimed is None else int(claimed[0])


async def _advance(context: AppContext, to: datetime) -> None:
    async with context.database.transaction() as db:
        await db.execute(
            update(_ALERTS)
            .where(_ALERTS.c.cause == CURSOR, _ALERTS.c.last_sent_at < to)
            .values(last_sent_at=to)
        )


async def _release(context: AppContext, *, failures: int, not_before: datetime) -> None:
    async with context.database.transaction() as db:
        await db.execute(
            update(_ALERTS)
            .where(_ALERTS.c.cause == LEASE_CAUSE)
            .values(last_sent_at=not_before, suppressed=failures)
        )


async def _post(http: httpx.AsyncClient, url: str, body: dict[str, str]) -> str | None:
    """The error, or None once the channel took the line. Never the URL: it is the channel's secret."""
    try:
        response = await http.post(url, json=body, timeout=SEND_TIMEOUT, follow_redirects=False)
    except httpx.HTTPError as exc:
        return exc.__class__.__name__
    if 200 <= response.status_code < 300:
        return None
    return f"the channel answered {response.status_code}"


def _backoff(failures: int) -> timedelta:
    delay: timedelta = FIRST_RETRY * (2 ** min(failures - 1, 20))
    return min(delay, MAX_RETRY)
