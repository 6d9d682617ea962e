"""What a person bought and holds, on the account page in a real browser; and the operator's view of it."""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import expect

from entitle.context import build_context
from entitle.services.access import balances
from entitle.services.access.purchases import apply_purchase_state
from tests.browser.conftest import DESKTOP, PHONE, Live, PageAt
from tests.browser.test_pages import make_operator, sign_in, visit
from tests.factories import credits_purchase, one_time_purchase


async def bought(live: Live, account_id: uuid.UUID) -> None:
    """Pro for good and two packs of credits, 30 of them spent: as the stores and the app's backend would."""
    context = build_context(live.server.settings, signing_key=live.server.signing_key)
    try:
        async with context.database.transaction() as db:
            await apply_purchase_state(
                db, one_time_purchase(account_id, store_purchase_id=f"pi_{account_id}")
            )
            await apply_purchase_state(
                db, credits_purchase(account_id, store_purchase_id=f"tx-{account_id}", quantity=2)
            )
            await balances.post(db, account_id, "credits", -30, reason="export", source="api")
    finally:
        await context.aclose()


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_the_account_page_shows_a_lifetime_purchase_and_a_credits_balance(
    live: Live, page_at: PageAt, width: int
) -> None:
    email = f"buyer-{width}@example.com"
    session = await live.sign_up(email)
    await bought(live, uuid.UUID(session["account"]["id"]))

    page = await page_at(width)
    await sign_in(page, live, email)
    lifetime = page.get_by_role("article", name="Pro, lifetime", exact=True)
    await expect(lifetime.locator(".lasts")).to_have_text("For good (lifetime)")
    packs = page.get_by_role("article", name="100 credits", exact=True)
    await expect(packs.locator(".credited")).to_have_text("200 Credits")
    await expect(page.locator("#balance-credits")).to_contain_text("Credits")
    await expect(page.locator("#balance-credits .amount")).to_have_text("170")
    await visit(page, live, "/account", "account-purchases")


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
async def test_the_operator_sees_the_ledger_and_adjusts_a_balance(
    live: Live, page_at: PageAt, width: int
) -> None:
    email = f"ledger-customer-{width}@example.com"
    session = await live.sign_up(email)
    account_id = session["account"]["id"]
    await bought(live, uuid.UUID(account_id))
    await make_operator(live, f"ledger-ops-{width}@example.com")

    ops = await page_at(width)
    await sign_in(ops, live, f"ledger-ops-{width}@example.com", "/admin")
    await ops.goto(f"{live.url}/admin/accounts/{account_id}")
    await ops.locator("#adjust-amount").fill("-500")
    await ops.locator("#adjust-reason").fill("typo in a goodwill credit")
    await ops.get_by_role("button", name="Adjust").click()
    await expect(ops.locator("#error")).to_contain_text("below zero")
    await ops.locator("#adjust-amount").fill("25")
    await ops.locator("#adjust-reason").fill("goodwill, ticket 9")
    await ops.get_by_role("button", name="Adjust").click()
    await expect(ops.get_by_role("status")).to_contain_text("adjusted")
    await expect(ops.locator("#ledger-credits tbody tr").first).to_contain_text("goodwill, ticket 9")
    await visit(ops, live, f"/admin/accounts/{account_id}", "admin-account-purchases")
