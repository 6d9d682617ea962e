"""/pricing sells one-time products beside the plans: a lifetime unlock and credit packs, bought through
payment-mode Checkout at the stand-in, as a browser without JavaScript does it."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.providers.stripe.conftest import stripe_settings
from tests.standins.stripe import StripeStandin
from tests.web.test_pages import csrf_of, deliver_all, sign_up, subscribed

pytestmark = pytest.mark.usefixtures("pushed")


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    return stripe_settings(standin)


async def _buy(client: httpx.AsyncClient, product: str, quantity: str | None = None) -> httpx.Response:
    pricing = await client.get("/pricing")
    fields = {"csrf_token": csrf_of(pricing), "product": product}
    if quantity is not None:
        fields["quantity"] = quantity
    return await client.post("/pricing/buy", data=fields)


async def test_pricing_shows_one_time_products_with_a_quantity_picker(client: httpx.AsyncClient) -> None:
    page = await client.get("/pricing")
    assert page.status_code == 200
    assert 'id="option-pro_lifetime"' in page.text and "$199.99" in page.text
    assert 'id="option-credits_100"' in page.text and "$4.99" in page.text and "100 Credits" in page.text
    picker = re.search(r'<select id="quantity-credits_100" name="quantity">(.*?)</select>', page.text, re.S)
    assert picker is not None
    assert re.findall(r'<option value="(\d+)">', picker.group(1)) == [str(n) for n in range(1, 11)]
    # A lifetime unlock is bought one at a time: no picker.
    assert 'id="quantity-pro_lifetime"' not in page.text
    assert page.text.count('action="/pricing/buy"') == 2


async def test_buying_a_credit_pack_opens_payment_checkout_and_lands(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    signed_out = await _buy(client, "credits_100", "3")
    assert signed_out.headers["location"] == "/account/sign-in?next=%2Fpricing&product=credits_100"
    await sign_up(client)
    to_stripe = await _buy(client, "credits_100", "3")
    assert to_stripe.status_code == 303
    [session] = standin.state.all("checkout.session")
    assert to_stripe.headers["location"] == session["url"]
    assert session["mode"] == "payment" and session["_hidden"]["line_items"]["data"][0]["quantity"] == 3
    hosted = httpx.get(session["url"])
    assert "$14.97" in hosted.text and ">Pay<" in hosted.text

    waiting = await client.get(f"/checkout/success?product=credits_100&session_id={session['id']}")
    assert 'data-state="waiting"' in waiting.text
    standin.complete_checkout(session["id"])
    intent_id = standin.state.get(session["id"], "checkout.session")["payment_intent"]
    await deliver_all(client, standin)
    done = await client.get(f"/checkout/success?product=credits_100&session_id={session['id']}")
    assert 'data-state="done"' in done.text and f'data-purchase="{intent_id}"' in done.text
    assert "100 credits" in done.text


async def test_a_quantity_beyond_the_limit_is_explained(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    await sign_up(client)
    for quantity in ("11", "x", "-1"):
        refused = await _buy(client, "credits_100", quantity)
        assert refused.status_code == 422 and 'id="error"' in refused.text
    assert standin.state.all("checkout.session") == []


async def test_a_subscriber_is_told_to_cancel_after_buying_the_lifetime_unlock(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    await subscribed(client, standin)
    pricing = await client.get("/pricing")
    notice = re.search(
        r'<p class="notice" role="note" id="cancel-after-pro_lifetime">(.*?)</p>', pricing.text, re.S
    )
    assert notice is not None
    assert "Pro, monthly" in notice.group(1) and 'href="/account"' in notice.group(1)
    # The credit pack grants nothing the subscription does: no such notice there.
    assert 'id="cancel-after-credits_100"' not in pricing.text
    # Allowed all the same: the person chooses, knowing.
    to_stripe = await _buy(client, "pro_lifetime")
    assert to_stripe.status_code == 303
    lifetime = [s for s in standin.state.all("checkout.session") if s["mode"] == "payment"]
    assert len(lifetime) == 1
    standin.complete_checkout(lifetime[0]["id"])
    await deliver_all(client, standin)
    owned = await client.get("/pricing")
    assert 'id="owned-pro_lifetime"' in owned.text and 'id="cancel-after-pro_lifetime"' not in owned.text
    again = await client.post("/pricing/buy", data={"csrf_token": csrf_of(owned), "product": "pro_lifetime"})
    assert again.status_code == 409 and "already owns" in again.text
