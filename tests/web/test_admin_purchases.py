"""The dashboard's view of purchases and balances, and an operator's audited balance adjustment."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.catalog import ProductType
from entitle.core.models.events import AccountEvent
from entitle.core.models.purchases import BalanceTransaction
from entitle.core.subscriptions import Environment
from entitle.db.types import utcnow
from entitle.services.access import balances
from entitle.services.access.purchases import apply_purchase_state
from entitle.services.identity import operators
from tests.conftest import ADMIN_KEY
from tests.factories import bearer, credits_purchase, make_account, one_time_purchase, register
from tests.web.test_admin_pages import sign_in
from tests.web.test_pages import csrf_of


@pytest.fixture
async def operator(client: httpx.AsyncClient, context: AppContext) -> uuid.UUID:
    """An operator, signed in on `client`'s pages; its account id."""
    async with context.database.sessionmaker() as db:
        account = await make_account(db, email="ops@example.com")
        await operators.add_operator(db, "ops@example.com", added_by="cli:test")
        await db.commit()
    await sign_in(client, "ops@example.com")
    return account.id


@pytest.fixture
async def customer(client: httpx.AsyncClient, context: AppContext) -> dict[str, object]:
    """A customer who bought Pro for good and a pack of credits, and spent 30 of them."""
    session = await register(client, "pat@example.com")
    account_id = uuid.UUID(session["account"]["id"])
    async with context.database.transaction() as db:
        await apply_purchase_state(
            db, one_time_purchase(account_id, purchased_at=datetime(2026, 3, 14, 9, 30, tzinfo=UTC))
        )
        await apply_purchase_state(db, credits_purchase(account_id))
        await balances.post(db, account_id, "credits", -30, reason="export", source="api")
    return session


def ledger_rows(html: str, currency: str) -> list[list[str]]:
    table = re.search(rf'<table class="data" id="ledger-{currency}">(.*?)</table>', html, re.S)
    assert table, currency
    body = table.group(1).split("<tbody>")[1]
    return [
        [
            " ".join(re.sub(r"<[^>]+>", " ", cell).split())
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


async def test_the_account_view_lists_purchases_and_each_ledger_newest_first(
    client: httpx.AsyncClient, operator: uuid.UUID, customer: dict[str, object]
) -> None:
    account_id = customer["account"]["id"]  # type: ignore[index]
    page = await client.get(f"/admin/accounts/{account_id}")
    assert page.status_code == 200
    lifetime = page.text[page.text.index('id="purchase-pi_lifetime_1"') :]
    lifetime = lifetime[: lifetime.index("</tr>")]
    assert "pro_lifetime" in lifetime and "$199.99" in lifetime and "2026-03-14 09:30:00 UTC" in lifetime
    assert "for good" in lifetime
    assert 'id="purchase-3000000000000001"' in page.text and "$4.99" in page.text
    # Newest first: the spend, then the pack's credit; each with its balance after, reason and source.
    rows = ledger_rows(page.text, "credits")
    assert [row[1:] for row in rows] == [
        ["-30", "70", "export", "api"],
        ["+100", "100", "purchase", "purchase:app_store:3000000000000001"],
    ]
    heading = re.search(r'id="balance-credits">(.*?)</h3>', page.text, re.S)
    assert heading and re.sub(r"<[^>]+>", "", heading.group(1)) == "Credits: 70"


async def test_an_adjustment_is_posted_with_the_operator_as_source_and_audited(
    client: httpx.AsyncClient, context: AppContext, operator: uuid.UUID, customer: dict[str, object]
) -> None:
    account_id = uuid.UUID(customer["account"]["id"])  # type: ignore[index]
    page = await client.get(f"/admin/accounts/{account_id}")
    form = {
        "csrf_token": csrf_of(page),
        "idempotency_key": re.search(r'name="idempotency_key" value="([^"]+)"', page.text).group(1),  # type: ignore[union-attr]
        "currency": "credits",
        "amount": "25",
        "reason": "goodwill, ticket 9",
    }
    adjusted = await client.post(f"/admin/accounts/{account_id}/balances", data=form)
    assert adjusted.headers["location"] == f"/admin/accounts/{account_id}?notice=adjusted"
    # The customer's own answer says so at once.
    answer = (await client.get("/v1/me/entitlements", headers=bearer(customer))).json()  # type: ignore[arg-type]
    assert answer["balances"]["credits"] == 95

    # The same form sent again (a double click, a reload) adjusts nothing more.
    again = await client.post(f"/admin/accounts/{account_id}/balances", data=form)
    assert again.headers["location"].endswith("notice=already_adjusted")

    async with context.database.sessionmaker() as db:
        posted = await db.scalar(
            select(BalanceTransaction).where(
                BalanceTransaction.account_id == account_id, BalanceTransaction.amount == 25
            )
        )
        audit = (
            await db.scalars(
                select(AccountEvent).where(
                    AccountEvent.account_id == account_id, AccountEvent.type == operators.OPERATOR_ACTION
                )
            )
        ).all()
    assert posted is not None
    assert posted.source == f"operator:{operator}" and posted.reason == "goodwill, ticket 9"
    [entry] = audit
    assert entry.data["action"] == "balance.adjusted" and entry.data["by"] == "ops@example.com"
    assert entry.data["amount"] == 25 and entry.data["balance"] == 95 and entry.data["currency"] == "credits"
    shown = await client.get(f"/admin/accounts/{account_id}?notice=adjusted")
    assert ledger_rows(shown.text, "credits")[0][1:] == [
        "+25",
        "95",
        "goodwill, ticket 9",
        f"operator:{operator}",
    ]
    assert "The balance is adjusted" in shown.text


@pytest.mark.parametrize(
    ("fields", "status", "said"),
    [
        ({"amount": "-71", "reason": "typo"}, 409, "Credits is at 70, and taking 71 would put it below zero"),
        ({"amount": "10", "reason": "  "}, 422, "Say why"),
        ({"amount": "0", "reason": "why"}, 422, "Give a whole number"),
        ({"amount": "²", "reason": "why"}, 422, "Give a whole number"),
        ({"amount": "1" * 40, "reason": "why"}, 422, "Give a whole number"),
        ({"amount": "5", "reason": "why", "currency": "gold"}, 422, "Choose one of the catalog"),
    ],
)
async def test_a_refused_adjustment_says_why_and_changes_nothing(
    client: httpx.AsyncClient,
    context: AppContext,
    operator: uuid.UUID,
    customer: dict[str, object],
    fields: dict[str, str],
    status: int,
    said: str,
) -> None:
    account_id = uuid.UUID(customer["account"]["id"])  # type: ignore[index]
    page = await client.get(f"/admin/accounts/{account_id}")
    refused = await client.post(
        f"/admin/accounts/{account_id}/balances",
        data={"csrf_token": csrf_of(page), "currency": "credits", **fields},
    )
    assert refused.status_code == status
    error = re.search(r'id="error">(.*?)</p>', refused.text, re.S)
    assert error and said in error.group(1)
    async with context.database.sessionmaker() as db:
        assert await balances.balance_of(db, account_id, "credits") == 70
        audit = await db.scalar(
            select(AccountEvent).where(
                AccountEvent.account_id == account_id, AccountEvent.type == operators.OPERATOR_ACTION
            )
        )
    assert audit is None


async def test_the_adjustment_form_needs_the_pages_csrf_token(
    client: httpx.AsyncClient, context: AppContext, operator: uuid.UUID, customer: dict[str, object]
) -> None:
    account_id = uuid.UUID(customer["account"]["id"])  # type: ignore[index]
    forged = await client.post(
        f"/admin/accounts/{account_id}/balances",
        data={"csrf_token": "x" * 43, "currency": "credits", "amount": "1000", "reason": "free"},
    )
    assert forged.status_code == 403
    async with context.database.sessionmaker() as db:
        assert await balances.balance_of(db, account_id, "credits") == 70


async def test_support_finds_the_account_by_a_purchase_id(
    client: httpx.AsyncClient, context: AppContext, operator: uuid.UUID, customer: dict[str, object]
) -> None:
    account_id = customer["account"]["id"]  # type: ignore[index]
    for query in ("pi_lifetime_1", "3000000000000001"):
        found = await client.get("/admin/accounts", params={"q": query})
        assert found.headers.get("location") == f"/admin/accounts/{account_id}", query
    assert (await client.get("/admin/accounts", params={"q": "pi_nobody"})).status_code == 200


async def test_a_pass_in_the_sandbox_is_marked_so(
    client: httpx.AsyncClient, context: AppContext, operator: uuid.UUID
) -> None:
    session = await register(client, "pass@example.com")
    account_id = uuid.UUID(session["account"]["id"])
    async with context.database.transaction() as db:
        await apply_purchase_state(
            db,
            one_time_purchase(
                account_id,
                store_purchase_id="pi_pass",
                type=ProductType.NON_RENEWING,
                environment=Environment.SANDBOX,
                store_expires_at=datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=30),
            ),
        )
    page = await client.get(f"/admin/accounts/{account_id}")
    row = page.text[page.text.index('id="purchase-pi_pass"') :]
    row = row[: row.index("</tr>")]
    assert "sandbox" in row and "until January 31, 2030" in row


async def test_one_time_revenue_is_reported_beside_mrr_on_the_page_and_over_the_api(
    client: httpx.AsyncClient, operator: uuid.UUID, customer: dict[str, object]
) -> None:
    today = utcnow().date().isoformat()
    summary = await client.get("/v1/reports/summary", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    body = summary.json()
    # The lifetime unlock fell before the range; the pack of credits was bought today.
    assert body["one_time_revenue"] == {"usd": 499} and body["one_time_purchases"] == 1
    assert body["one_time_daily"][-1] == {"date": today, "purchases": 1, "revenue": {"usd": 499}}
    assert body["mrr"] == {"usd": 0}

    page = await client.get("/admin/reports")
    assert page.status_code == 200
    assert re.search(r'id="one-time-usd">\$4\.99<', page.text)
    assert re.search(r'id="mrr-usd">\$0\.00<', page.text)
    assert "1 purchase of lifetime unlocks" in page.text
    assert re.search(rf"<td>{today}</td><td class=\"num\">1</td><td class=\"num\">\$4\.99</td>", page.text)
    assert 'id="chart-one-time-title"' in page.text
