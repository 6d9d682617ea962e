"""The operators' dashboard: find a customer, see everything about them, fix what went wrong.

Operators sign in on the hosted sign-in page like anyone; `entitle admin add EMAIL` is what lets them
past /admin. Every action is written to the affected account's event log with the operator's name.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.client_input import ascii_int, check_window
from entitle.core.catalog import MAX_GRANT
from entitle.core.models.accounts import Account
from entitle.core.models.events import DeliveryStatus, InboxStatus, ProviderEvent, WebhookDelivery
from entitle.core.subscriptions import Environment
from entitle.db.types import utcnow
from entitle.errors import EntitleError, Forbidden, InvalidRequest, NotFound
from entitle.providers.stripe.provider import stripe_provider
from entitle.services.access import balances, grants
from entitle.services.billing import guest_checkout, invoices
from entitle.services.delivery import outbound
from entitle.services.identity import operators
from entitle.services.reporting import lookups, reports
from entitle.services.reporting.dossier import dossier
from entitle.web import charts
from entitle.web.deps import SessionDep
from entitle.web.pages.forms import read_form
from entitle.web.pages.rendering import redirect, render
from entitle.web.pages.visits import PageVisit, Visit
from entitle.web.schemas import parse_uuid

router = APIRouter(prefix="/admin", include_in_schema=False)

EVENTS_PER_PAGE = 50
NOTICES = {
    "granted": "The grant is in place; the customer's apps hear about it at once.",
    "revoked": "The grant is revoked.",
    "retried": "The event was tried again.",
    "resent": "The delivery was sent again.",
    "adjusted": "The balance is adjusted; the customer's apps hear about it at once.",
    "attached": "The purchase paid before the account existed is now in this account.",
    "already_adjusted": "That adjustment was already made (the form was sent twice); nothing changed again.",
    "canceled": "The subscription is canceled at Stripe; access ends as Stripe confirms it.",
    "cancel_scheduled": "The subscription will not renew; access lasts until the paid period ends.",
    "refunded": "The refund is made at Stripe; access and balances follow when Stripe confirms it.",
}
# The largest adjustment one form makes either way: the catalog's ceiling on a single grant.
MAX_ADJUSTMENT = MAX_GRANT


async def _operator(visit: PageVisit, db: AsyncSession, request: Request) -> Account | Response:
    """The signed-in operator, or the response that sends anyone else away."""
    if visit.account is None:
        return redirect(visit, "/account/sign-in?" + urlencode({"next": request.url.path}))
    if not await operators.is_operator(db, visit.account.id):
        raise Forbidden(
            "This account is not an operator. Someone with access to the server can make it one with "
            "`entitle admin add EMAIL`.",
            code="not_an_operator",
        )
    return visit.account


def _notice(request: Request) -> str | None:
    return NOTICES.get(request.query_params.get("notice", ""))


def _page(visit: PageVisit, request: Request, template: str, **values: Any) -> Response:
    return render(visit, template, notice=_notice(request), **values)


@router.get("")
async def home(request: Request, visit: Visit, db: SessionDep) -> Response:
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    return await _home(visit, request, db)


async def _home(
    visit: PageVisit, request: Request, db: AsyncSession, *, error: str | None = None, status: int = 200
) -> Response:
    failed_events = await db.scalar(
        select(func.count()).where(ProviderEvent.status.in_((InboxStatus.FAILED, InboxStatus.PARKED)))
    )
    failed_deliveries = await db.scalar(
        select(func.count()).where(WebhookDelivery.status == DeliveryStatus.FAILED)
    )
    return _page(
        visit,
        request,
        "admin/home.html",
        status=status,
        failed_events=failed_events or 0,
        failed_deliveries=failed_deliveries or 0,
        unclaimed=await guest_checkout.unclaimed(db),
        catalog=visit.context.catalog,
        error=error,
    )


@router.post("/guest-checkouts/{row_id}/attach")
async def attach_guest_checkout(row_id: str, request: Request, visit: Visit, db: SessionDep) -> Response:
    """Attach a purchase paid before its account existed to the account an operator names (audited)."""
    fields = await read_form(request, visit)
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    try:
        row = await guest_checkout.get(
            db, _id_in_path(row_id, "unclaimed purchase", "guest_checkout_not_found")
        )
        target = await guest_checkout.account_with_email(db, fields.get("email", "").strip()[:320])
        if target is None:
            raise NotFound("No account has that email address.", code="account_not_found")
        await guest_checkout.claim(db, stripe_provider(visit.context.providers), row, target, via="operator")
        await operators.record_action(
            db,
            target.id,
            operator,
            "guest_checkout.attached",
            {"guest_checkout_id": str(row.id), "checkout_id": row.checkout_id, "email": row.email},
        )
    except EntitleError as exc:
        await db.rollback()
        return await _home(visit, request, db, error=exc.message, status=exc.status_code)
    return redirect(visit, f"/admin/accounts/{target.id}?notice=attached")


# --- finding an account ------------------------------------------------------------------------------------
def _criteria(query: str) -> dict[str, str]:
    """What a support person pasted: an email, a Stripe customer or payment, an App Store transaction, an
    external id."""
    if "@" in query:
        return {"email": query}
    if query.startswith("cus_"):
        return {"stripe_customer_id": query}
    if query.startswith("pi_"):
        return {"purchase_id": query}
    if ascii_int(query) is not None:
        return {"original_transaction_id": query}
    return {"external_id": query}


@router.get("/accounts")
async def search(request: Request, visit: Visit, db: SessionDep) -> Response:
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    query = request.query_params.get("q", "").strip()[:320]
    if not query:
        return redirect(visit, "/admin")
    account_id = parse_uuid(query)
    if account_id is None:
        criteria = _criteria(query)
        found = await lookups.find_accounts(db, **criteria)
        if not found and "original_transaction_id" in criteria:
            # App Store ids are all digits: not a subscription's, so perhaps a one-time purchase's.
            found = await lookups.find_accounts(db, purchase_id=query)
    else:
        match = await db.get(Account, account_id)
        found = [match] if match is not None else []
    if len(found) == 1:
        return redirect(visit, f"/admin/accounts/{found[0].id}")
    return _page(visit, request, "admin/search.html", query=query, accounts=found)


def _id_in_path(raw: str, what: str, code: str) -> uuid.UUID:
    """A path's id, or the 404 a well-formed id that matches nothing would get."""
    parsed = parse_uuid(raw)
    if parsed is None:
        raise NotFound(f"No {what} has this id.", code=code)
    return parsed


def _account_id(raw: str) -> uuid.UUID:
    return _id_in_path(raw, "account", "account_not_found")


@router.get("/accounts/{account_id}")
async def account(account_id: str, request: Request, visit: Visit, db: SessionDep) -> Response:
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    return await _account_page(visit, request, db, _account_id(account_id))


async def _account_page(
    visit: PageVisit,
    request: Request,
    db: AsyncSession,
    account_id: uuid.UUID,
    *,
    error: str | None = None,
    status: int = 200,
) -> Response:
    raw_page = request.query_params.get("page", "1")
    page = max(1, min(ascii_int(raw_page) or 1, 10_000))
    stripe_key = visit.context.settings.stripe_secret_key
    live = stripe_key is not None and stripe_key.get_secret_value().startswith(("sk_live_", "rk_live_"))
    found = await dossier(db, account_id, stripe_live=live)
    log = await lookups.event_log(
        db, account_id, limit=EVENTS_PER_PAGE, offset=(page - 1) * EVENTS_PER_PAGE, type=None
    )
    return render(
        visit,
        "admin/account.html",
        status=status,
        notice=_notice(request),
        error=error,
        d=found,
        log=log,
        page=page,
        pages=max(1, -(-int(log["total"]) // EVENTS_PER_PAGE)),
        entitlements=list(visit.context.catalog.entitlements),
        today=utcnow().date(),
        now=utcnow(),
        # A fresh key per page shown: the same form sent twice (a double click, a reload) adjusts once.
        adjustment_key=secrets.token_urlsafe(16),
        currencies=visit.context.catalog.currencies,
        invoices=await _recent_invoices(visit, db, found.account),
    )


# The newest invoices the account view lists (each with its refund form).
ADMIN_INVOICES = 10


async def _recent_invoices(visit: PageVisit, db: AsyncSession, account: Account) -> dict[str, Any] | None:
    """The account's newest invoices from Stripe; None when Stripe cannot be asked (the page still shows)."""
    try:
        return await invoices.list_invoices(
            db, lambda: stripe_provider(visit.context.providers), account, limit=ADMIN_INVOICES
        )
    except EntitleError:
        return None


async def _act(
    request: Request,
    visit: PageVisit,
    db: AsyncSession,
    account_id: str,
    action: Callable[[Account, uuid.UUID, dict[str, str]], Awaitable[str]],
) -> Response:
    """Run an operator's form action on an account: the page again with the error, or back with a notice."""
    fields = await read_form(request, visit)
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    target = _account_id(account_id)
    try:
        notice = await action(operator, target, fields)
    except EntitleError as exc:
        await db.rollback()
        return await _account_page(visit, request, db, target, error=exc.message, status=exc.status_code)
    return redirect(visit, f"/admin/accounts/{target}?notice={notice}")


def _grant_end(fields: dict[str, str]) -> datetime:
    """The grant's end: a number of days from now, or through the end of a chosen day (UTC)."""
    until = fields.get("until", "").strip()
    if until:
        try:
            day = date.fromisoformat(until)
        except ValueError as exc:
            raise InvalidRequest("Give the last day as a date.", code="invalid_grant_dates") from exc
        return datetime.combine(check_window(day, "until") + timedelta(days=1), time(), tzinfo=UTC)
    days = ascii_int(fields.get("days", "").strip())
    if days is None or not 1 <= days <= 3660:
        raise InvalidRequest(
            "Give a number of days between 1 and 3660, or a last day.", code="invalid_grant_dates"
        )
    return utcnow() + timedelta(days=days)


@router.post("/accounts/{account_id}/grants")
async def grant(account_id: str, request: Request, visit: Visit, db: SessionDep) -> Response:
    async def action(operator: Account, target: uuid.UUID, fields: dict[str, str]) -> str:
        reason = fields.get("reason", "").strip()[:500] or None
        made = await grants.create_grant(
            db,
            account_id=target,
            entitlement=fields.get("entitlement", ""),
            expires_at=_grant_end(fields),
            reason=reason,
            created_by=f"operator:{operators.operator_label(operator)}",
        )
        await operators.record_action(
            db,
            target,
            operator,
            "grant.created",
            {
                "grant_id": str(made.id),
                "entitlement": made.entitlement,
                "expires_at": made.expires_at.isoformat(),
                "reason": reason,
            },
        )
        return "granted"

    return await _act(request, visit, db, account_id, action)


@router.post("/accounts/{account_id}/grants/{grant_id}/revoke")
async def revoke(account_id: str, grant_id: str, request: Request, visit: Visit, db: SessionDep) -> Response:
    async def action(operator: Account, target: uuid.UUID, fields: dict[str, str]) -> str:
        parsed = _id_in_path(grant_id, "grant", "grant_not_found")
        revoked = await grants.revoke_grant(db, parsed, account_id=target)
        details = {"grant_id": str(revoked.id), "entitlement": revoked.entitlement}
        await operators.record_action(db, target, operator, "grant.revoked", details)
        return "revoked"

    return await _act(request, visit, db, account_id, action)


@router.post("/accounts/{account_id}/balances")
async def adjust_balance(account_id: str, request: Request, visit: Visit, db: SessionDep) -> Response:
    async def action(operator: Account, target: uuid.UUID, fields: dict[str, str]) -> str:
        currency, amount, reason = _adjustment(visit, fields)
        if (await lookups.require_account(db, target)).is_deleted:
            raise InvalidRequest(
                "This account was deleted; its balances stay as they were.", code="account_deleted"
            )
        key = fields.get("idempotency_key", "").strip()[:100]
        try:
            posted = await balances.post(
                db,
                target,
                currency,
                amount,
                reason=reason,
                source=f"operator:{operator.id}",
                idempotency_key=f"operator:{key}" if key else None,
            )
        except balances.InsufficientBalance as exc:
            name = _currency_name(visit, currency)
            held = exc.details.get("balance", 0) if exc.details else 0
            raise balances.InsufficientBalance(
                f"Nothing changed: {name} is at {held:,}, and taking {-amount:,} would put it below zero. "
                f"Take at most {max(held, 0):,}."
            ) from None
        if posted.replayed:
            return "already_adjusted"
        await operators.record_action(
            db,
            target,
            operator,
            "balance.adjusted",
            {
                "currency": currency,
                "amount": amount,
                "balance": posted.balance,
                "reason": reason,
                "transaction_id": str(posted.transaction.id),
            },
        )
        return "adjusted"

    return await _act(request, visit, db, account_id, action)


def _currency_name(visit: PageVisit, currency: str) -> str:
    known = visit.context.catalog.currencies.get(currency)
    return known.name if known is not None else currency


def _adjustment(visit: PageVisit, fields: dict[str, str]) -> tuple[str, int, str]:
    """The currency, signed amount and reason of an adjustment form, or the sentence saying what is wrong."""
    currency = fields.get("currency", "")
    if currency not in visit.context.catalog.currencies:
        raise InvalidRequest("Choose one of the catalog's currencies.", code="unknown_currency")
    raw = fields.get("amount", "").strip()
    negative = raw.startswith("-")
    magnitude = ascii_int(raw.removeprefix("-").removeprefix("+")) if len(raw) <= 12 else None
    if magnitude is None or not 1 <= magnitude <= MAX_ADJUSTMENT:
        raise InvalidRequest(
            f"Give a whole number from 1 to {MAX_ADJUSTMENT:,} to add, or with a minus sign to take away.",
            code="invalid_amount",
        )
    reason = " ".join(fields.get("reason", "").split())[:500]
    if not reason:
        raise InvalidRequest(
            "Say why (a ticket, a goodwill credit): the reason is kept in the ledger.", code="reason_required"
        )
    return currency, -magnitude if negative else magnitude, reason


# --- how the business is doing -----------------------------------------------------------------------------
DAILY_SERIES = (
    ("new", "New subscriptions"),
    ("churned", "Churned"),
    ("trials_started", "Trials started"),
    ("trials_converted", "Trials converted"),
    ("refunds", "Refunds"),
)


@router.get("/reports")
async def reports_page(request: Request, visit: Visit, db: SessionDep) -> Response:
    """The same figures as `GET /v1/reports/summary`, as charts with the numbers beside them."""
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    query = request.query_params
    try:
        start, end = reports.report_range(query.get("from") or None, query.get("to") or None, utcnow().date())
    except EntitleError as exc:
        start, end = reports.default_range(utcnow().date())
        error: str | None = exc.message
    else:
        error = None
    sandbox = query.get("environment") == Environment.SANDBOX.value
    environment = Environment.SANDBOX if sandbox else Environment.PRODUCTION
    summary = await reports.summary(db, visit.context.catalog, start, end, environment)
    series = {
        key: [(date.fromisoformat(str(day["date"])), day[key]) for day in summary["daily"]]
        for key, _ in DAILY_SERIES
    }
    one_time = [(date.fromisoformat(str(day["date"])), day["purchases"]) for day in summary["one_time_daily"]]
    return render(
        visit,
        "admin/reports.html",
        status=400 if error else 200,
        error=error,
        summary=summary,
        start=start,
        end=end,
        actives_chart=Markup(
            charts.stacked_bars(
                summary["active"]["by_product"], title="Active subscriptions by store and product"
            )
        ),
        one_time_chart=Markup(
            charts.daily_bars(one_time, title="One-time purchases", chart_id="chart-one-time")
        ),
        daily=[
            (key, label, Markup(charts.daily_bars(series[key], title=label, chart_id=f"chart-{key}")))
            for key, label in DAILY_SERIES
        ],
    )


# --- what went wrong ---------------------------------------------------------------------------------------
@router.get("/provider-events")
async def provider_events(request: Request, visit: Visit, db: SessionDep) -> Response:
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    rows = await db.scalars(
        select(ProviderEvent)
        .where(ProviderEvent.status.in_((InboxStatus.FAILED, InboxStatus.PARKED)))
        .order_by(ProviderEvent.received_at.desc())
        .limit(200)
    )
    return _page(visit, request, "admin/provider_events.html", events=list(rows))


@router.post("/provider-events/{event_id}/retry")
async def retry_event(event_id: str, request: Request, visit: Visit, db: SessionDep) -> Response:
    await read_form(request, visit)
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    row_id = _id_in_path(event_id, "provider event", "provider_event_not_found")
    status = await visit.context.pipeline.retry_now(row_id)
    event = await db.get(ProviderEvent, row_id)
    if event is not None:
        # On the account the event is about when the provider names one; else on the operator's own.
        await operators.record_action(
            db,
            event.account_id or operator.id,
            operator,
            "provider_event.retried",
            {
                "provider_event_id": str(row_id),
                "provider": event.provider,
                "type": event.type,
                "status": status,
            },
        )
    return redirect(visit, "/admin/provider-events?notice=retried")


@router.get("/deliveries")
async def deliveries(request: Request, visit: Visit, db: SessionDep) -> Response:
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    rows = await db.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.status == DeliveryStatus.FAILED)
        .order_by(WebhookDelivery.created_at.desc())
        .limit(200)
    )
    return _page(visit, request, "admin/deliveries.html", deliveries=list(rows))


@router.post("/deliveries/{delivery_id}/retry")
async def retry_delivery(delivery_id: str, request: Request, visit: Visit, db: SessionDep) -> Response:
    await read_form(request, visit)
    operator = await _operator(visit, db, request)
    if isinstance(operator, Response):
        return operator
    parsed = _id_in_path(delivery_id, "delivery", "delivery_not_found")
    found = await db.get(WebhookDelivery, parsed)
    if found is None:
        raise NotFound("No delivery has this id.", code="delivery_not_found")
    context = visit.context
    sent = await outbound.retry_now(
        context.database, context.http, found.endpoint_id, parsed, development=context.settings.is_development
    )
    if sent.account_id is not None:
        await operators.record_action(
            db,
            sent.account_id,
            operator,
            "delivery.retried",
            {"delivery_id": str(parsed), "event_type": sent.event_type, "status": str(sent.status)},
        )
    return redirect(visit, "/admin/deliveries?notice=resent")
