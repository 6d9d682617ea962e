"""The dashboard's money buttons on an account: cancel a Stripe subscription now or at its period's end
with a refund choice, and refund a purchase or an invoice. Each takes a reason and is written to the
account's event log with the operator's name, like every other operator action."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from fastapi import APIRouter, Request, Response

from entitle.core.currencies import minor_unit_digits
from entitle.core.models.accounts import Account
from entitle.errors import InvalidRequest
from entitle.providers.stripe.provider import stripe_provider
from entitle.services.billing import refunds
from entitle.services.billing.refunds import CancelWhen, RefundChoice
from entitle.services.identity import operators
from entitle.web.deps import SessionDep
from entitle.web.pages.admin import _act
from entitle.web.pages.visits import Visit

router = APIRouter(prefix="/admin", include_in_schema=False)

E = TypeVar("E", CancelWhen, RefundChoice)
_AMOUNT = re.compile(r"^\d{1,9}(\.\d{1,3})?$")


def _reason(fields: dict[str, str]) -> str:
    reason = refunds.clean_reason(fields.get("reason"))
    if reason is None:
        raise InvalidRequest(
            "Say why (a ticket, a goodwill refund): the reason is kept in the account's history.",
            code="reason_required",
        )
    return reason


def _choice(kind: type[E], raw: str | None, what: str) -> E:
    try:
        return kind(raw or "")
    except ValueError:
        raise InvalidRequest(f"Choose {what}.", code="invalid_request") from None


def minor_units(raw: str, currency: str) -> int | None:
    """An amount typed as a person reads it (`4.99`) in the currency's minor units; None when empty."""
    text = raw.strip().replace(",", "")
    if not text:
        return None
    digits = minor_unit_digits(currency)
    try:
        value = Decimal(text) if _AMOUNT.match(text) else None
    except InvalidOperation:
        value = None
    if value is None or value <= 0 or value.as_tuple().exponent < -digits:  # type: ignore[operator]
        raise InvalidRequest(
            f"Give the amount as a positive number with at most {digits} decimals, or leave it empty to "
            "refund all that is left.",
            code="invalid_amount",
        )
    return int(value * 10**digits)


@router.post("/accounts/{account_id}/subscriptions/{subscription_id}/cancel")
async def cancel(
    account_id: str, subscription_id: str, request: Request, visit: Visit, db: SessionDep
) -> Response:
    async def action(operator: Account, target: uuid.UUID, fields: dict[str, str]) -> str:
        when = _choice(CancelWhen, fields.get("when"), "when the subscription ends")
        refund = _choice(RefundChoice, fields.get("refund", "none"), "what to refund")
        await refunds.cancel_subscription(
            db,
            lambda: stripe_provider(visit.context.providers),
            target,
            subscription_id[:255],
            when=when,
            refund=refund,
            reason=_reason(fields),
            by=operators.operator_label(operator),
            operator_id=operator.id,
        )
        return "canceled" if when is CancelWhen.NOW else "cancel_scheduled"

    return await _act(request, visit, db, account_id, action)


@router.post("/accounts/{account_id}/refunds")
async def refund(account_id: str, request: Request, visit: Visit, db: SessionDep) -> Response:
    async def action(operator: Account, target: uuid.UUID, fields: dict[str, str]) -> str:
        purchase_id = fields.get("purchase_id", "").strip()[:255] or None
        invoice_id = fields.get("invoice_id", "").strip()[:255] or None
        currency = fields.get("currency", "").strip()[:3] or "usd"
        await refunds.refund_payment(
            db,
            lambda: stripe_provider(visit.context.providers),
            target,
            purchase_id=purchase_id,
            invoice_id=invoice_id,
            amount=minor_units(fields.get("amount", "")[:20], currency),
            reason=_reason(fields),
            by=operators.operator_label(operator),
            operator_id=operator.id,
            # The page's one-time key: the same form sent twice (a double click, a reload) refunds once.
            idempotency_key=fields.get("idempotency_key", "").strip()[:100] or None,
        )
        return "refunded"

    return await _act(request, visit, db, account_id, action)
