"""Invoices for the signed-in account, and support's cancel-now and refund with the server key."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field

from entitle.errors import NotFound
from entitle.providers.stripe.provider import StripeProvider, stripe_provider
from entitle.services.billing import invoices, refunds
from entitle.services.billing.refunds import CancelWhen, RefundChoice
from entitle.services.reporting import lookups
from entitle.web.deps import AdminDep, ContextDep, CurrentAccount, SessionDep
from entitle.web.schemas import StrictBody, parse_uuid

router = APIRouter(tags=["billing"])

# Who acted, in the account's event log, when the app's backend calls with the server key.
SERVER_KEY = "server key"

InvoiceLimit = Annotated[int, Query(ge=1, le=invoices.MAX_LIMIT, description="Invoices per page (1-100)")]
InvoiceCursor = Annotated[
    str | None,
    Query(
        min_length=4,
        max_length=255,
        description="`next` from the previous page: the invoices older than this one",
    ),
]
_REASON = Field(
    default=None,
    max_length=refunds.MAX_REASON,
    description="Why (a ticket, a goodwill gesture): kept in the account's event log and the refund's "
    "metadata; `duplicate`, `fraudulent` or `requested_by_customer` is also passed to Stripe as its reason.",
)


class CancelBody(StrictBody):
    when: CancelWhen = Field(description="`now` ends it at once; `period_end` stops it renewing")
    refund: RefundChoice = Field(
        default=RefundChoice.NONE,
        description="`none`, `last_payment` (what is left of the last paid invoice's payment) or `prorated` "
        "(the unused share of the current period; with `when` = `now` only)",
    )
    reason: str | None = _REASON


class RefundBody(StrictBody):
    purchase_id: str | None = Field(
        default=None, min_length=1, max_length=255, description="A one-time purchase's id (`purchases[].id`)"
    )
    invoice_id: str | None = Field(default=None, min_length=1, max_length=255, description="A paid invoice")
    amount: int | None = Field(
        default=None,
        ge=1,
        le=99_999_999_999,
        description="Minor units; all that is left when omitted (422 `amount_too_large` above that)",
    )
    reason: str | None = _REASON


async def _account_id(db: SessionDep, raw: str) -> uuid.UUID:
    parsed = parse_uuid(raw)
    if parsed is None:
        raise NotFound("No account has this id.", code="account_not_found")
    return (await lookups.require_account(db, parsed)).id


@router.get("/v1/me/invoices")
async def my_invoices(
    account: CurrentAccount,
    context: ContextDep,
    db: SessionDep,
    limit: InvoiceLimit = invoices.DEFAULT_LIMIT,
    after: InvoiceCursor = None,
) -> dict[str, Any]:
    """The account's invoices, newest first, read from Stripe: `next` is the `after` of the next page."""

    def stripe() -> StripeProvider:
        return stripe_provider(context.providers)

    return await invoices.list_invoices(db, stripe, account, limit=limit, after=after)


@router.post("/v1/accounts/{account_id}/subscriptions/{subscription_id}/cancel")
async def cancel_subscription(
    _admin: AdminDep,
    account_id: str,
    subscription_id: Annotated[str, Path(min_length=1, max_length=255)],
    body: CancelBody,
    context: ContextDep,
    db: SessionDep,
) -> dict[str, Any]:
    """Cancel a Stripe subscription now or at its period's end, refunding as asked; the subscription as
    the entitlements answer lists it, with `refund`. An App Store one is 409 `managed_by_app_store`."""
    return await refunds.cancel_subscription(
        db,
        lambda: stripe_provider(context.providers),
        await _account_id(db, account_id),
        subscription_id,
        when=body.when,
        refund=body.refund,
        reason=body.reason,
        by=SERVER_KEY,
    )


@router.post("/v1/accounts/{account_id}/refunds", status_code=201)
async def create_refund(
    _admin: AdminDep, account_id: str, body: RefundBody, context: ContextDep, db: SessionDep
) -> dict[str, Any]:
    """Refund a one-time purchase or a paid invoice; access and balances change when Stripe confirms."""
    refund = await refunds.refund_payment(
        db,
        lambda: stripe_provider(context.providers),
        await _account_id(db, account_id),
        purchase_id=body.purchase_id,
        invoice_id=body.invoice_id,
        amount=body.amount,
        reason=body.reason,
        by=SERVER_KEY,
    )
    return {"refund": refund}
