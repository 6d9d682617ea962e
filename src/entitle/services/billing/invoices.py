"""The signed-in account's invoices, read from Stripe a page at a time.

Invoices are not stored: Stripe is where they live (numbers, PDFs, hosted pages, the payments and refunds
that change their status), and a copy here would only ever be older. A page costs one paced request
(`GET /v1/invoices?customer=`), subscription invoices and one-time payments' receipt invoices
(`invoice_creation`) alike. An account that never became a Stripe customer has none, and Stripe is not
asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.entitlements import isoformat
from entitle.core.models.accounts import Account
from entitle.errors import InvalidRequest
from entitle.providers.stripe.errors import StripeObjectMissing
from entitle.providers.stripe.models import StripeCustomer
from entitle.providers.stripe.provider import StripeProvider

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# What an invoice id looks like: a cursor that could not be one is refused before Stripe is asked.
INVOICE_ID = re.compile(r"^in_[A-Za-z0-9]{1,250}$")
# Drafts are Stripe's work in progress: no number, no page, nothing the person owes or paid yet.
HIDDEN_STATUSES = frozenset({"draft"})


def invoice_json(invoice: dict[str, Any]) -> dict[str, Any]:
    """One invoice as `GET /v1/me/invoices` lists it; `total` in the currency's minor units."""
    created = invoice.get("created")
    return {
        "id": invoice["id"],
        "number": invoice.get("number"),
        "created": isoformat(datetime.fromtimestamp(created, UTC)) if isinstance(created, int) else None,
        "total": invoice.get("total"),
        "currency": invoice.get("currency"),
        "status": invoice.get("status"),
        "hosted_invoice_url": invoice.get("hosted_invoice_url"),
        "invoice_pdf": invoice.get("invoice_pdf"),
    }


def check_cursor(after: str | None) -> str | None:
    if after is not None and not INVOICE_ID.match(after):
        raise InvalidRequest("`after` is not an invoice id (`in_...`).", code="invalid_cursor")
    return after


async def list_invoices(
    db: AsyncSession,
    stripe: Callable[[], StripeProvider],
    account: Account,
    *,
    limit: int = DEFAULT_LIMIT,
    after: str | None = None,
) -> dict[str, Any]:
    """`{"invoices": [...], "next": <id or null>}`, newest first; `next` is the `after` of the next page.

    `stripe` is called only when there is something to read, so an account with no Stripe customer gets
    its empty list on a server where Stripe is not configured too.
    """
    check_cursor(after)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidRequest(f"`limit` is between 1 and {MAX_LIMIT}.", code="invalid_limit")
    row = await db.get(StripeCustomer, account.id)
    if row is None:
        return {"invoices": [], "next": None}
    try:
        page = await stripe().gateway.list_invoices(
            customer=row.customer_id, limit=limit, starting_after=after
        )
    except StripeObjectMissing as exc:
        if after is None:  # the customer itself is gone at Stripe (deleted there): nothing to list
            return {"invoices": [], "next": None}
        # Stripe answers 404 for a `starting_after` it does not know.
        raise InvalidRequest("`after` names no invoice of this account.", code="invalid_cursor") from exc
    data: list[dict[str, Any]] = page.get("data") or []
    shown = [invoice_json(i) for i in data if i.get("status") not in HIDDEN_STATUSES]
    following = str(data[-1]["id"]) if page.get("has_more") and data else None
    return {"invoices": shown, "next": following}
