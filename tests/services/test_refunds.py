"""The arithmetic and the edges of support's cancel and refund, and the invoice list's guard."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.errors import InvalidRequest
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.billing import invoices, refunds
from entitle.web.pages.admin_billing import minor_units
from tests.factories import make_account

START = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
END = int(datetime(2026, 3, 31, tzinfo=UTC).timestamp())


def sub(start: int = START, end: int = END) -> dict[str, object]:
    return {"items": {"data": [{"current_period_start": start, "current_period_end": end}]}}


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 3, 1, tzinfo=UTC), 3000),
        (datetime(2026, 3, 11, tzinfo=UTC), 2000),
        (datetime(2026, 3, 16, 12, tzinfo=UTC), 1450),
        (datetime(2026, 3, 31, tzinfo=UTC), 0),
        (datetime(2026, 4, 5, tzinfo=UTC), 0),
        (datetime(2026, 2, 1, tzinfo=UTC), 3000),
    ],
)
def test_the_unused_share_is_prorated_to_the_second_and_rounded_down(moment: datetime, expected: int) -> None:
    assert refunds._unused_share(sub(), 3000, moment) == expected


def test_no_period_or_nothing_paid_refunds_nothing() -> None:
    assert refunds._unused_share({"items": {"data": []}}, 3000, datetime.now(UTC)) == 0
    assert refunds._unused_share(sub(), 0, datetime(2026, 3, 2, tzinfo=UTC)) == 0


@pytest.mark.parametrize(
    ("typed", "currency", "expected"),
    [
        ("4.99", "usd", 499),
        ("5", "usd", 500),
        ("1,000", "usd", 100000),
        ("500", "jpy", 500),
        ("", "usd", None),
    ],
)
def test_operators_type_amounts_as_people_read_them(typed: str, currency: str, expected: int | None) -> None:
    assert minor_units(typed, currency) == expected


@pytest.mark.parametrize(
    ("typed", "currency"), [("4.999", "usd"), ("1.5", "jpy"), ("-3", "usd"), ("0", "usd"), ("abc", "usd")]
)
def test_amounts_that_cannot_be_refunded_are_refused(typed: str, currency: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        minor_units(typed, currency)
    assert refused.value.code == "invalid_amount"


def test_reasons_are_tidied_and_bounded() -> None:
    assert refunds.clean_reason("  Ticket\n 42 ") == "Ticket 42"
    assert refunds.clean_reason("   ") is None
    assert len(refunds.clean_reason("x" * 900) or "") == refunds.MAX_REASON


async def test_an_account_without_a_stripe_customer_never_reaches_stripe(db: AsyncSession) -> None:
    account = await make_account(db)

    def unreachable() -> StripeProvider:
        raise AssertionError("Stripe was asked")

    assert await invoices.list_invoices(db, unreachable, account) == {"invoices": [], "next": None}
    with pytest.raises(InvalidRequest):
        await invoices.list_invoices(db, unreachable, account, after="evil")
