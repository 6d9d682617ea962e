"""`entitle catalog push` and `entitle sync stripe` against the stand-in."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select

from entitle.cli.stripe import sync_stripe
from entitle.context import AppContext
from entitle.core.catalog import Catalog
from entitle.core.models.entitlements import Subscription
from entitle.providers.stripe.catalog_push import push_catalog
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.billing import billing_stripe
from tests.factories import make_account
from tests.standins.stripe import StripeStandin


def _repriced(catalog: Catalog, product: str, amount: int) -> Catalog:
    current = catalog.products[product]
    assert current.stripe is not None
    changed = dataclasses.replace(current, stripe=dataclasses.replace(current.stripe, unit_amount=amount))
    return dataclasses.replace(catalog, products={**catalog.products, product: changed})


async def test_push_is_idempotent_and_moves_lookup_keys_on_a_new_amount(
    context: AppContext, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    first = await push_catalog(stripe_provider.gateway, context.catalog)
    assert {r.action for r in first} == {"created"}
    again = await push_catalog(stripe_provider.gateway, context.catalog)
    assert {r.action for r in again} == {"unchanged"}
    assert [r.price_id for r in again] == [r.price_id for r in first]
    assert len(standin.state.all("product")) == len(first)

    repriced = await push_catalog(stripe_provider.gateway, _repriced(context.catalog, "pro_monthly", 1299))
    moved = next(r for r in repriced if r.product == "pro_monthly")
    assert moved.action == "repriced" and moved.price_id != first[0].price_id
    old = standin.state.objects[next(r.price_id for r in first if r.product == "pro_monthly")]
    new = standin.state.objects[moved.price_id]
    assert old["lookup_key"] is None and old["active"] is False
    assert new["lookup_key"] == "pro_monthly" and new["unit_amount"] == 1299
    assert new["product"] == old["product"] and old["metadata"]["entitle_product"] == "pro_monthly"


async def test_push_can_go_back_to_earlier_terms_and_revives_an_archived_price(
    context: AppContext, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    first = {r.product: r for r in await push_catalog(stripe_provider.gateway, context.catalog)}
    await push_catalog(stripe_provider.gateway, _repriced(context.catalog, "pro_monthly", 1299))
    back = {r.product: r for r in await push_catalog(stripe_provider.gateway, context.catalog)}
    assert back["pro_monthly"].action == "repriced"
    holder = standin.state.objects[back["pro_monthly"].price_id]
    assert holder["lookup_key"] == "pro_monthly" and holder["active"] is True
    assert holder["unit_amount"] == standin.state.objects[first["pro_monthly"].price_id]["unit_amount"]

    await stripe_provider.gateway.update_price(holder["id"], {"active": False})  # archived by hand
    revived = {r.product: r for r in await push_catalog(stripe_provider.gateway, context.catalog)}
    assert revived["pro_monthly"].action == "reactivated" and holder["active"] is True
    assert {r.action for r in await push_catalog(stripe_provider.gateway, context.catalog)} == {"unchanged"}


async def test_sync_reconciles_every_subscription_and_reports_changes(
    context: AppContext, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    await push_catalog(stripe_provider.gateway, context.catalog)
    subs = []
    async with context.database.sessionmaker() as db:
        for i in range(3):
            account = await make_account(db, email=f"sync{i}@example.com")
            session = await billing_stripe.start_checkout(
                db, stripe_provider, account, "pro_monthly", success_url=None, cancel_url=None
            )
            await db.commit()
            standin.complete_checkout(session["id"])
            subs.append(standin.state.get(session["id"], "checkout.session")["subscription"])
    standin.cancel_now(subs[2])
    # No webhook was delivered: sync alone must bring the database to Stripe's truth.
    stripe_provider.gateway._backoff = 0.001
    standin.rate_limit(2)
    summary = await sync_stripe(context)
    assert summary.seen == 3 and summary.errors == []
    assert summary.changed == {"new -> active": 2, "new -> expired": 1}
    async with context.database.sessionmaker() as db:
        rows = {r.store_subscription_id: r.status for r in await db.scalars(select(Subscription))}
    assert rows == {subs[0]: "active", subs[1]: "active", subs[2]: "expired"}
    second = await sync_stripe(context)
    assert second.unchanged == 3 and not second.changed
