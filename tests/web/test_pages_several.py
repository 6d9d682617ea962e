"""The hosted pages for a person with a plan and an add-on: one card per subscription with its own
buttons, plan changes within a plan only, add-ons offered as add-ons."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.providers.stripe.conftest import deliver, stripe_settings
from tests.standins.stripe import StripeStandin
from tests.web.test_billing_stripe_several import PLAN_AND_ADD_ON, plan_at_stripe
from tests.web.test_pages import csrf_of, post_form, sign_up

pytestmark = pytest.mark.usefixtures("pushed")


@pytest.fixture
def standin() -> Any:
    with StripeStandin() as running:
        yield running


@pytest.fixture
def settings_overrides(standin: StripeStandin, tmp_path: Path) -> dict[str, Any]:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(PLAN_AND_ADD_ON)
    return stripe_settings(standin) | {"catalog": catalog}


async def buy(client: httpx.AsyncClient, standin: StripeStandin, product: str) -> str:
    """Subscribe on /pricing with the form the page offers, pay at the stand-in; the subscription's id."""
    since = len(standin.events.log)
    pricing = await client.get("/pricing")
    to_stripe = await client.post(
        "/pricing/subscribe", data={"csrf_token": csrf_of(pricing), "product": product}
    )
    assert to_stripe.status_code == 303, to_stripe.text
    session = standin.state.all("checkout.session")[-1]
    standin.complete_checkout(session["id"])
    for event in standin.events.log[since:]:
        assert (await deliver(client, standin, event)).status_code == 200
    return str(standin.state.get(session["id"], "checkout.session")["subscription"])


def offer_for(pricing: str, product: str) -> str:
    """The HTML of one product's card on /pricing."""
    found = re.search(
        rf'<article class="option[^"]*" aria-labelledby="option-{product}">(.*?)</article>', pricing, re.S
    )
    assert found, product
    return found.group(1)


def card_for(account: str, subscription_id: str) -> str:
    found = re.search(
        rf'<article [^>]*data-subscription-id="{subscription_id}"[^>]*>(.*?)</article>', account, re.S
    )
    assert found, subscription_id
    return found.group(1)


async def test_pricing_offers_an_add_on_as_an_add_on_and_switches_within_a_plan(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    await sign_up(client)
    pro = await buy(client, standin, "pro_monthly")
    pricing = (await client.get("/pricing")).text
    assert f"/account/change-plan?product=pro_yearly&amp;subscription_id={pro}" in offer_for(
        pricing, "pro_yearly"
    )
    for add_on in ("storage_monthly", "storage_yearly"):
        offer = offer_for(pricing, add_on)
        assert "Switch" not in offer and "change-plan" not in offer
        assert 'action="/pricing/subscribe"' in offer and ">Add<" in offer

    storage = await buy(client, standin, "storage_monthly")  # the "Add" form leads to checkout
    pricing = (await client.get("/pricing")).text
    assert f"subscription_id={pro}" in offer_for(pricing, "pro_yearly")
    assert f"/account/change-plan?product=storage_yearly&amp;subscription_id={storage}" in offer_for(
        pricing, "storage_yearly"
    )


async def test_each_card_on_the_account_page_acts_on_its_own_subscription(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    await sign_up(client)
    pro = await buy(client, standin, "pro_monthly")
    storage = await buy(client, standin, "storage_monthly")
    page = (await client.get("/account")).text
    pro_card, storage_card = card_for(page, pro), card_for(page, storage)
    assert f'name="subscription_id" value="{pro}"' in pro_card
    assert f'name="subscription_id" value="{storage}"' in storage_card
    # Each changes within its own plan: Pro to Pro yearly, Storage to Storage yearly, never across.
    assert "product=pro_yearly" in pro_card and "storage" not in pro_card.split("Change plan")[1]
    assert "product=storage_yearly" in storage_card and "pro_yearly" not in storage_card

    canceled = await post_form(
        client, "/account", "/account/subscription/cancel", {"subscription_id": storage}
    )
    assert canceled.headers["location"] == "/account?notice=canceled"
    assert plan_at_stripe(standin, storage) == ("storage_monthly", True)
    assert plan_at_stripe(standin, pro) == ("pro_monthly", False)

    preview = await client.get(f"/account/change-plan?product=pro_yearly&subscription_id={pro}")
    assert preview.status_code == 200 and f'name="subscription_id" value="{pro}"' in preview.text
    proration_date = re.search(r'name="proration_date" value="(\d+)"', preview.text)
    assert proration_date
    changed = await client.post(
        "/account/change-plan",
        data={
            "csrf_token": csrf_of(preview),
            "product": "pro_yearly",
            "subscription_id": pro,
            "proration_date": proration_date.group(1),
        },
    )
    assert changed.headers["location"] == "/account?notice=plan_changed"
    assert plan_at_stripe(standin, pro) == ("pro_yearly", False)
    assert plan_at_stripe(standin, storage) == ("storage_monthly", True)

    # A form without an id, with two subscriptions: the page says which to choose and changes nothing.
    vague = await post_form(client, "/account", "/account/subscription/resume", {})
    assert vague.status_code == 422 and "name one" in vague.text
    assert plan_at_stripe(standin, storage) == ("storage_monthly", True)
    across = await client.get(f"/account/change-plan?product=pro_yearly&subscription_id={storage}")
    assert across.status_code == 409 and plan_at_stripe(standin, storage) == ("storage_monthly", True)


async def test_every_account_action_of_a_person_without_a_subscription_answers_the_account_page(
    client: httpx.AsyncClient,
) -> None:
    """A failed action (nothing to cancel, no Stripe customer for the portal) rolls back and shows the
    account page with the reason: never a 500 from reading the account the rollback expired."""
    await sign_up(client, "nothing@example.com")
    for path, fields in [
        ("/account/billing", {}),
        ("/account/subscription/cancel", {}),
        ("/account/subscription/resume", {}),
        ("/account/change-plan", {"product": "pro_yearly", "proration_date": "1"}),
    ]:
        page = await post_form(client, "/account", path, fields)
        assert 400 <= page.status_code < 500, (path, page.status_code)
        assert 'role="alert"' in page.text and "nothing@example.com" in page.text, path
    preview = await client.get("/account/change-plan", params={"product": "pro_yearly"})
    assert 400 <= preview.status_code < 500 and 'role="alert"' in preview.text
