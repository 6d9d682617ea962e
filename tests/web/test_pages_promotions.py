"""A promotion code on the hosted pages: /pricing?promo= prefills it and shows the price after it, the
field on the page does the same, the code rides through sign-in into hosted Checkout, an invalid code is
a sentence on the page, and /account shows the discount the subscription carries."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from limits import parse

from entitle.context import AppContext
from entitle.providers.stripe.client import FormBodyHTTPXClient
from tests.providers.stripe.conftest import stripe_settings
from tests.standins.stripe import StripeStandin
from tests.web.test_pages import csrf_of, deliver_all, sign_up

pytestmark = pytest.mark.usefixtures("pushed")


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    return stripe_settings(standin)


@pytest.fixture
def merchant(standin: StripeStandin) -> Iterator[stripe.StripeClient]:
    http = FormBodyHTTPXClient(allow_sync_methods=True)
    yield stripe.StripeClient(standin.secret_key, base_addresses={"api": standin.base_url}, http_client=http)
    http.close()  # type: ignore[no-untyped-call]


def make_code(client: stripe.StripeClient, code: str, coupon: dict[str, Any], **promo: Any) -> str:
    made = client.v1.coupons.create(coupon)  # type: ignore[arg-type]
    return client.v1.promotion_codes.create(
        {"code": code, "promotion": {"type": "coupon", "coupon": made.id}, **promo}
    ).id


def hidden_code(page: httpx.Response, product: str) -> str | None:
    form = re.search(
        rf'<input type="hidden" name="product" value="{product}">\s*(<input type="hidden" '
        r'name="promotion_code" value="([^"]*)">)?',
        page.text,
    )
    assert form is not None, f"no form for {product}"
    return form.group(2)


async def test_a_promo_link_prefills_the_code_and_shows_the_discounted_prices(
    client: httpx.AsyncClient, merchant: stripe.StripeClient
) -> None:
    make_code(merchant, "LAUNCH20", {"percent_off": 20, "duration": "repeating", "duration_in_months": 3})
    page = await client.get("/pricing?promo=launch20")
    assert page.status_code == 200
    assert 'name="promo" value="LAUNCH20"' in page.text
    assert "Code <strong>LAUNCH20</strong>: 20% off for 3 months." in page.text
    monthly = re.search(r'id="discount-pro_monthly">(.*?)</p>', page.text, re.S)
    assert monthly is not None and "$7.99" in monthly.group(1) and "20% off for 3 months" in monthly.group(1)
    lifetime = re.search(r'id="discount-pro_lifetime">(.*?)</p>', page.text, re.S)
    assert lifetime is not None and "$159.99" in lifetime.group(1)
    assert hidden_code(page, "pro_monthly") == "LAUNCH20"
    assert hidden_code(page, "credits_100") == "LAUNCH20"
    assert "ENTITLE_" not in page.text


async def test_an_invalid_code_says_why_on_the_page(
    client: httpx.AsyncClient, merchant: stripe.StripeClient
) -> None:
    make_code(merchant, "OLD", {"percent_off": 20}, active=False)
    for code, words in [
        ("NOPE", "There is no promotion code NOPE"),
        ("OLD", "The code OLD is no longer active."),
    ]:
        page = await client.get("/pricing", params={"promo": code})
        assert page.status_code == 200
        error = re.search(r'<p class="error" role="alert" id="promo-error">(.*?)</p>', page.text, re.S)
        assert error is not None and words in error.group(1)
        assert hidden_code(page, "pro_monthly") is None
    odd = await client.get("/pricing", params={"promo": "<script>" + "x" * 500})
    assert odd.status_code == 200 and "<script>" not in odd.text


async def test_a_code_for_one_product_marks_the_others(
    client: httpx.AsyncClient, standin: StripeStandin, merchant: stripe.StripeClient
) -> None:
    price = next(p for p in standin.state.all("price") if p.get("lookup_key") == "pro_yearly")
    make_code(merchant, "YEARLY", {"percent_off": 25, "applies_to": {"products": [price["product"]]}})
    page = await client.get("/pricing?promo=YEARLY")
    assert hidden_code(page, "pro_yearly") == "YEARLY"
    assert hidden_code(page, "pro_monthly") is None
    monthly = re.search(r'id="discount-pro_monthly">(.*?)</p>', page.text, re.S)
    assert monthly is not None and "does not apply to this product" in monthly.group(1)


async def test_the_code_rides_through_sign_in_into_checkout_and_shows_on_the_account(
    client: httpx.AsyncClient, standin: StripeStandin, merchant: stripe.StripeClient
) -> None:
    promo_id = make_code(
        merchant, "LAUNCH20", {"percent_off": 20, "duration": "repeating", "duration_in_months": 3}
    )
    page = await client.get("/pricing?promo=LAUNCH20")
    signed_out = await client.post(
        "/pricing/subscribe",
        data={"csrf_token": csrf_of(page), "product": "pro_monthly", "promotion_code": "LAUNCH20"},
    )
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == (
        "/account/sign-in?next=%2Fpricing%3Fpromo%3DLAUNCH20&product=pro_monthly"
    )
    sign_in = await client.get(signed_out.headers["location"])
    to_stripe = await client.post(
        "/account/sign-up",
        data={
            "csrf_token": csrf_of(sign_in),
            "email": "launch@example.com",
            "password": "correct horse battery staple",
            "next": "/pricing?promo=LAUNCH20",
            "product": "pro_monthly",
        },
    )
    assert to_stripe.status_code == 303, to_stripe.text
    [session] = standin.state.all("checkout.session")
    assert to_stripe.headers["location"] == session["url"]
    assert session["discounts"][0]["promotion_code"] == promo_id
    hosted = httpx.get(session["url"])
    assert "Due today: $7.99" in hosted.text and "LAUNCH20" in hosted.text
    standin.complete_checkout(session["id"])
    await deliver_all(client, standin)
    account = await client.get("/account")
    discount = re.search(r'<dd class="discount-applied">(.*?)</dd>', account.text, re.S)
    assert discount is not None and discount.group(1).startswith("LAUNCH20: 20% off until ")


async def test_a_code_refused_at_checkout_re_renders_the_page_with_the_reason(
    client: httpx.AsyncClient, standin: StripeStandin, merchant: stripe.StripeClient
) -> None:
    await sign_up(client)
    make_code(merchant, "ONCE", {"percent_off": 20}, max_redemptions=1)
    page = await client.get("/pricing?promo=ONCE")
    promo = standin.state.get(
        next(p["id"] for p in standin.state.all("promotion_code") if p["code"] == "ONCE"), "promotion_code"
    )
    promo["times_redeemed"] = 1  # someone else used it between the page and the button
    refused = await client.post(
        "/pricing/subscribe",
        data={"csrf_token": csrf_of(page), "product": "pro_monthly", "promotion_code": "ONCE"},
    )
    assert refused.status_code == 422
    assert "The code ONCE has been used as many times as it can be." in refused.text
    assert standin.state.all("checkout.session") == []


async def test_code_lookups_are_limited_per_client(
    client: httpx.AsyncClient, context: AppContext, merchant: stripe.StripeClient, standin: StripeStandin
) -> None:
    """Guessing codes on /pricing meets the sign-in limits' per-client budget (here 3 a minute)."""
    context.rate_limiter.per_ip = parse("3/minute")
    make_code(merchant, "LAUNCH20", {"percent_off": 20})
    for guess, shown in (
        ("AAAA", 'id="promo-error"'),
        ("BBBB", 'id="promo-error"'),
        ("LAUNCH20", 'id="promo-applied"'),
    ):
        assert shown in (await client.get("/pricing", params={"promo": guess})).text
    asked = len([r for r in standin.requests if r["path"] == "/v1/promotion_codes"])
    limited = await client.get("/pricing", params={"promo": "CCCC"})
    assert limited.status_code == 200 and "Too many attempts" in limited.text
    assert len([r for r in standin.requests if r["path"] == "/v1/promotion_codes"]) == asked
    # Without a code the page costs no lookup and shows the plans as ever.
    plain = await client.get("/pricing")
    assert plain.status_code == 200 and "$9.99" in plain.text and 'id="promo-error"' not in plain.text
