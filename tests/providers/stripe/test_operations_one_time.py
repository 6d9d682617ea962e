"""`entitle catalog push` and `entitle sync stripe` for one-time products, against the stand-in."""

from __future__ import annotations

from sqlalchemy import select

from entitle.cli.stripe import sync_stripe
from entitle.context import AppContext
from entitle.core.models.purchases import Purchase
from entitle.providers.stripe.catalog_push import push_catalog
from entitle.providers.stripe.provider import StripeProvider
from entitle.services.access.entitlements import read_entitlements
from entitle.services.billing import billing_stripe
from tests.factories import make_account
from tests.standins.stripe import StripeStandin


async def test_push_creates_one_time_prices_that_payment_mode_checkout_sells(
    context: AppContext, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    first = {r.product: r for r in await push_catalog(stripe_provider.gateway, context.catalog)}
    for key in ("pro_lifetime", "credits_100"):
        price = standin.state.get(first[key].price_id, "price")
        assert price["type"] == "one_time" and price["recurring"] is None
        assert price["lookup_key"] == key and price["metadata"]["entitle_product"] == key
    assert standin.state.get(first["pro_monthly"].price_id, "price")["recurring"]["interval"] == "month"
    again = await push_catalog(stripe_provider.gateway, context.catalog)
    assert {r.action for r in again} == {"unchanged"}
    async with context.database.sessionmaker() as db:
        account = await make_account(db, email="pushed@example.com")
        session = await billing_stripe.start_checkout(
            db, stripe_provider, account, "credits_100", success_url=None, cancel_url=None, quantity=2
        )
    line = standin.state.get(session["id"], "checkout.session")["_hidden"]["line_items"]["data"][0]
    assert line["price"] == first["credits_100"].price_id and line["quantity"] == 2


async def test_sync_finds_purchases_and_refunds_no_webhook_told(
    context: AppContext, stripe_provider: StripeProvider, standin: StripeStandin
) -> None:
    await push_catalog(stripe_provider.gateway, context.catalog)
    intents = []
    async with context.database.sessionmaker() as db:
        account = await make_account(db, email="missed@example.com")
        for product, quantity in (("credits_100", 2), ("pro_lifetime", 1)):
            started = await billing_stripe.start_payment(db, stripe_provider, account, product, quantity)
            await db.commit()
            assert standin.confirm_payment_intent(started["payment_intent_id"])
            intents.append(started["payment_intent_id"])
        # Started and never paid: not a purchase.
        await billing_stripe.start_payment(db, stripe_provider, account, "credits_100", 5)
        await db.commit()
    standin.refund_payment(intents[0], amount=499)
    summary = await sync_stripe(context)
    assert summary.errors == [] and summary.purchases == 2
    assert summary.changed == {"purchase new -> partly refunded": 1, "purchase new -> paid": 1}
    async with context.database.sessionmaker() as db:
        answer = await read_entitlements(db, account.id)
        stored = sorted((r.store_purchase_id, r.refunded_amount) for r in await db.scalars(select(Purchase)))
    assert answer["balances"] == {"credits": 100} and answer["entitlements"]["pro"]["active"] is True
    assert stored == sorted([(intents[0], 499), (intents[1], 0)])
    # The refund of the rest happens while entitle is down; the next sync takes back the other 100.
    standin.refund_payment(intents[0])
    second = await sync_stripe(context)
    assert second.changed == {"purchase partly refunded -> revoked": 1}
    async with context.database.sessionmaker() as db:
        assert (await read_entitlements(db, account.id))["balances"] == {"credits": 0}
    third = await sync_stripe(context)
    assert not third.changed
