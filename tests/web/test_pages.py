"""The hosted pages over HTTP, as a browser without JavaScript uses them: forms, cookies, redirects.

The same journeys in a real browser, at phone and desktop widths, are in tests/browser/.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.accounts import RefreshTokenFamily
from entitle.core.models.mail import OutboundMail
from entitle.services.access.subscriptions import apply_subscription_state
from entitle.web.pages.rendering import _channels, brand_css, contrast
from tests.factories import DEFAULT_PASSWORD, app_store_subscription, bearer, register
from tests.providers.stripe.conftest import deliver, stripe_settings
from tests.standins.stripe import StripeStandin

pytestmark = pytest.mark.usefixtures("pushed")


@pytest.fixture
def settings_overrides(standin: StripeStandin, request: pytest.FixtureRequest) -> dict[str, Any]:
    brand = {"app_name": "Acme Notes", "brand_color": "#0a7d4f"}
    return stripe_settings(standin) | brand | getattr(request, "param", {})


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


async def post_form(
    http: httpx.AsyncClient, page_path: str, action: str, fields: dict[str, str]
) -> httpx.Response:
    """Open the page, then submit one of its forms as a browser would (with the page's CSRF token)."""
    page = await http.get(page_path)
    assert page.status_code == 200, page.text
    return await http.post(action, data={"csrf_token": csrf_of(page), **fields})


async def sign_up(http: httpx.AsyncClient, email: str = "pat@example.com", **extra: str) -> httpx.Response:
    return await post_form(
        http, "/account/sign-in", "/account/sign-up", {"email": email, "password": DEFAULT_PASSWORD, **extra}
    )


async def deliver_all(http: httpx.AsyncClient, standin: StripeStandin) -> None:
    for event in standin.events.log:
        assert (await deliver(http, standin, event)).status_code == 200


async def test_pricing_shows_every_plan_with_prices_side_by_side(client: httpx.AsyncClient) -> None:
    page = await client.get("/pricing")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    text = page.text
    assert "<title>Pricing · Acme Notes</title>" in text
    # Monthly beside yearly, with the yearly saving and the trial spelled out.
    assert text.index("Pro, monthly") < text.index("Pro, yearly")
    assert "$9.99" in text and "/ month" in text and "$99.99" in text and "/ year" in text
    assert "7-day free trial" in text and "Save 17%" in text
    # Every asset is ours.
    assert not re.search(r'(src|href)="(https?:)?//', text)


async def test_forms_refuse_a_post_without_the_pages_csrf_token(client: httpx.AsyncClient) -> None:
    await client.get("/account/sign-in")  # the CSRF cookie is set, but the form field is missing
    refused = await client.post(
        "/account/sign-up", data={"email": "x@example.com", "password": DEFAULT_PASSWORD}
    )
    assert refused.status_code == 403
    assert "did not come from this site" in refused.text and refused.headers["content-type"].startswith(
        "text/html"
    )
    forged = await client.post(
        "/account/sign-up",
        data={"email": "x@example.com", "password": DEFAULT_PASSWORD, "csrf_token": "x" * 43},
    )
    assert forged.status_code == 403
    non_ascii = await client.post(
        "/account/sign-up",
        data={"email": "x@example.com", "password": DEFAULT_PASSWORD, "csrf_token": "é" * 43},
    )
    assert non_ascii.status_code == 403 and "did not come from this site" in non_ascii.text


async def test_a_session_cookie_with_a_non_ascii_signature_is_signed_out(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    session_id = client.cookies["entitle_session"].partition(".")[0]
    client.cookies.clear()
    # As a browser sends it: the cookie's bytes, whatever they are.
    forged = f"entitle_session={session_id}.é{'x' * 42}".encode()
    answer = await client.get("/account", headers={"Cookie": forged})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/account/sign-in")


async def test_sign_up_signs_in_with_a_safe_cookie_and_sign_out_ends_the_session(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    response = await sign_up(client)
    assert (response.status_code, response.headers["location"]) == (303, "/account")
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("entitle_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    account = await client.get("/account")
    assert account.status_code == 200 and "pat@example.com" in account.text
    assert "You have no plan yet." in account.text

    signed_out = await post_form(client, "/account", "/account/sign-out", {})
    assert signed_out.headers["location"] == "/account/sign-in?notice=signed_out"
    async with context.database.sessionmaker() as db:
        families = (await db.scalars(select(RefreshTokenFamily))).all()
    assert [f.revoked_reason for f in families] == ["logout"]
    assert (await client.get("/account")).headers["location"].startswith("/account/sign-in")


async def test_a_wrong_password_says_so_on_the_page_and_signs_nobody_in(client: httpx.AsyncClient) -> None:
    await register(client, "pat@example.com")
    client.cookies.clear()
    wrong = await post_form(
        client,
        "/account/sign-in",
        "/account/sign-in",
        {"email": "pat@example.com", "password": "nope nope nope"},
    )
    assert wrong.status_code == 401
    assert 'role="alert"' in wrong.text and 'value="pat@example.com"' in wrong.text
    assert (await client.get("/account")).status_code == 303
    right = await post_form(
        client,
        "/account/sign-in",
        "/account/sign-in",
        {"email": "pat@example.com", "password": DEFAULT_PASSWORD},
    )
    assert right.headers["location"] == "/account"


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_per_address": "2/minute"}], indirect=True)
async def test_page_sign_in_shares_the_apis_rate_limit(client: httpx.AsyncClient) -> None:
    await register(client, "pat@example.com")
    for _ in range(2):
        await client.post("/v1/auth/login", json={"email": "pat@example.com", "password": "wrong password"})
    limited = await post_form(
        client,
        "/account/sign-in",
        "/account/sign-in",
        {"email": "pat@example.com", "password": DEFAULT_PASSWORD},
    )
    assert limited.status_code == 429 and "Too many attempts" in limited.text


async def test_next_never_leaves_the_site(client: httpx.AsyncClient) -> None:
    response = await sign_up(client, next="//evil.example/steal")
    assert response.headers["location"] == "/account"
    client.cookies.clear()
    response = await post_form(
        client,
        "/account/sign-in?next=/pricing",
        "/account/sign-in",
        {"email": "pat@example.com", "password": DEFAULT_PASSWORD, "next": "https://evil.example/"},
    )
    assert response.headers["location"] == "/account"


async def test_a_forged_session_cookie_is_ignored(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    value = client.cookies["entitle_session"]
    session_id, _, mac = value.partition(".")
    client.cookies.set("entitle_session", f"{session_id}.{mac[:-2]}AA")
    assert (await client.get("/account")).status_code == 303


async def test_subscribing_signs_in_then_goes_straight_to_checkout_then_the_account_shows_the_plan(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    pricing = await client.get("/pricing")
    chosen = await client.post(
        "/pricing/subscribe", data={"csrf_token": csrf_of(pricing), "product": "pro_monthly"}
    )
    assert chosen.headers["location"] == "/account/sign-in?next=%2Fpricing&product=pro_monthly"
    sign_in_page = await client.get(chosen.headers["location"])
    assert 'name="product" value="pro_monthly"' in sign_in_page.text
    to_stripe = await client.post(
        "/account/sign-up",
        data={
            "csrf_token": csrf_of(sign_in_page),
            "email": "pat@example.com",
            "password": DEFAULT_PASSWORD,
            "product": "pro_monthly",
        },
    )
    assert to_stripe.status_code == 303
    [session] = standin.state.all("checkout.session")
    assert to_stripe.headers["location"] == session["url"]
    assert session["success_url"] == (
        "http://testserver/checkout/success?product=pro_monthly&session_id={CHECKOUT_SESSION_ID}"
    )

    waiting = await client.get("/checkout/success?session_id=" + session["id"])
    assert 'data-state="waiting"' in waiting.text and "/assets/static/checkout-success.js" in waiting.text
    standin.complete_checkout(session["id"])
    await deliver_all(client, standin)
    done = await client.get("/checkout/success?session_id=" + session["id"])
    assert 'data-state="done"' in done.text and "Pro, monthly" in done.text

    account = await client.get("/account")
    assert "Pro, monthly" in account.text and "Renews on" in account.text
    assert "Visa •••• 4242" in account.text
    pricing = await client.get("/pricing")
    assert 'id="current-pro_monthly"' in pricing.text
    # The other plan is a switch (with its proration preview), never a second subscription.
    assert "/account/change-plan?product=pro_yearly" in pricing.text
    assert 'action="/pricing/subscribe"' not in pricing.text


async def subscribed(client: httpx.AsyncClient, standin: StripeStandin) -> None:
    await sign_up(client)
    pricing = await client.get("/pricing")
    await client.post("/pricing/subscribe", data={"csrf_token": csrf_of(pricing), "product": "pro_monthly"})
    [session] = standin.state.all("checkout.session")
    standin.complete_checkout(session["id"])
    await deliver_all(client, standin)


async def test_cancel_resume_change_plan_and_manage_billing_from_the_account_page(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    await subscribed(client, standin)
    canceled = await post_form(client, "/account", "/account/subscription/cancel", {})
    assert canceled.headers["location"] == "/account?notice=canceled"
    page = await client.get(canceled.headers["location"])
    assert "will not renew" in page.text and "Resume" in page.text
    resumed = await post_form(client, "/account", "/account/subscription/resume", {})
    assert "Renews on" in (await client.get(resumed.headers["location"])).text

    preview = await client.get("/account/change-plan?product=pro_yearly")
    assert preview.status_code == 200 and "Switch to Pro, yearly" in preview.text
    assert 'id="amount-due"' in preview.text
    proration_date = re.search(r'name="proration_date" value="(\d+)"', preview.text)
    assert proration_date
    changed = await client.post(
        "/account/change-plan",
        data={
            "csrf_token": csrf_of(preview),
            "product": "pro_yearly",
            "proration_date": proration_date.group(1),
        },
    )
    assert changed.headers["location"] == "/account?notice=plan_changed"
    assert "Pro, yearly" in (await client.get("/account")).text

    portal = await post_form(client, "/account", "/account/billing", {})
    assert portal.status_code == 303 and portal.headers["location"].startswith("https://billing.stripe.com/")


async def test_an_app_store_subscriber_is_not_offered_a_second_payment(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    await sign_up(client)
    me = await client.get("/account")
    assert me.status_code == 200
    async with context.database.sessionmaker() as db:
        account_id = (await db.scalars(select(RefreshTokenFamily.account_id))).one()
        await apply_subscription_state(db, app_store_subscription(account_id))
        await db.commit()
    pricing = await client.get("/pricing")
    assert 'id="app-store-notice"' in pricing.text
    assert 'action="/pricing/subscribe"' not in pricing.text
    # A form kept from before (or crafted) is refused by the service, on the page.
    csrf = csrf_of(await client.get("/account"))
    refused = await client.post("/pricing/subscribe", data={"csrf_token": csrf, "product": "pro_yearly"})
    assert refused.status_code == 409 and "App Store" in refused.text
    account = await client.get("/account")
    assert "the App Store" in account.text and "Settings › your name › Subscriptions" in account.text


async def mail_token(context: AppContext, template: str) -> str:
    async with context.database.sessionmaker() as db:
        mails = (await db.scalars(select(OutboundMail).where(OutboundMail.template == template))).all()
    return str(mails[-1].data["token"])


async def test_forgot_and_reset_password_through_the_pages(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    other_device = await register(client, "pat@example.com")
    client.cookies.clear()
    unknown = await post_form(
        client, "/account/forgot-password", "/account/forgot-password", {"email": "nobody@example.com"}
    )
    known = await post_form(
        client, "/account/forgot-password", "/account/forgot-password", {"email": "pat@example.com"}
    )
    assert unknown.status_code == known.status_code == 200
    assert 'id="reset-sent"' in unknown.text and 'id="reset-sent"' in known.text

    token = await mail_token(context, "reset_password")
    page = await client.get(f"/account/reset-password?token={token}")
    assert f'value="{token}"' in page.text
    done = await client.post(
        "/account/reset-password",
        data={"csrf_token": csrf_of(page), "token": token, "password": "a brand new password"},
    )
    assert done.headers["location"] == "/account?notice=password_reset"
    assert "Your password has been changed" in (await client.get(done.headers["location"])).text
    # Every other session ended; the link works once.
    assert (await client.get("/v1/me", headers=bearer(other_device))).status_code == 401
    again = await post_form(
        client,
        f"/account/reset-password?token={token}",
        "/account/reset-password",
        {"token": token, "password": "another new password"},
    )
    assert again.status_code == 400 and 'id="reset-error"' in again.text


async def test_verify_email_needs_a_click_not_just_a_visit(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    await register(client, "pat@example.com")
    token = await mail_token(context, "verify_email")
    page = await client.get(f"/account/verify-email?token={token}")
    # A mail scanner opening the link does not use it up.
    assert (await client.get(f"/account/verify-email?token={token}")).status_code == 200
    verified = await client.post("/account/verify-email", data={"csrf_token": csrf_of(page), "token": token})
    assert 'id="verified"' in verified.text


async def test_deleting_the_account_needs_the_word_and_ends_everything(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    await subscribed(client, standin)
    page = await client.get("/account/delete")
    not_confirmed = await client.post("/account/delete", data={"csrf_token": csrf_of(page), "confirm": "yes"})
    assert not_confirmed.status_code == 422
    deleted = await client.post("/account/delete", data={"csrf_token": csrf_of(page), "confirm": "delete"})
    assert deleted.status_code == 200 and 'id="deleted"' in deleted.text
    [sub] = standin.state.all("subscription")
    assert sub["status"] == "canceled"
    assert (await client.get("/account")).status_code == 303


async def test_the_stream_ticket_needs_the_pages_session_and_csrf_header(client: httpx.AsyncClient) -> None:
    await sign_up(client)
    page = await client.get("/checkout/success")
    assert (await client.post("/account/stream-ticket")).status_code == 403
    non_ascii = await client.post("/account/stream-ticket", headers={"X-CSRF-Token": "é".encode() * 43})
    assert non_ascii.status_code == 403
    ticket = await client.post("/account/stream-ticket", headers={"X-CSRF-Token": csrf_of_attr(page)})
    assert ticket.status_code == 200 and ticket.json()["ticket"]


def csrf_of_attr(page: httpx.Response) -> str:
    found = re.search(r'data-csrf="([^"]+)"', page.text)
    assert found
    return found.group(1)


async def test_pages_answer_errors_as_pages_and_the_api_keeps_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/account/no-such-page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    api = await client.get("/v1/no-such-route")
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    bad_plan = await client.get("/account/change-plan?product=nope")
    assert bad_plan.status_code == 303  # signed out: to sign in first


async def test_brand_color_and_logo(client: httpx.AsyncClient) -> None:
    css = (await client.get("/assets/brand.css")).text
    assert "--brand:#0a7d4f" in css and "--on-brand:#ffffff" in css
    logo = await client.get("/assets/logo")
    assert logo.headers["content-type"] == "image/svg+xml" and ">A</text>" in logo.text
    assert (await client.get("/")).headers["location"] == "/pricing"


@pytest.mark.parametrize("color", ["#ffdd00", "#f0f0f0", "#4f46e5", "#000", "#7fffd4", "#777777", "#e11d48"])
def test_text_on_and_in_the_brand_color_stays_readable(context: AppContext, color: str) -> None:
    css = brand_css(context.settings.model_copy(update={"brand_color": color}))
    values = dict(re.findall(r"--([a-z-]+):(#[0-9a-f]{6})", css))
    as_rgb = [_channels(values[name]) for name in ("brand", "on-brand", "brand-ink")]
    assert contrast(as_rgb[0], as_rgb[1]) >= 4.5
    assert contrast(as_rgb[2], (1.0, 1.0, 1.0)) >= 4.5


async def test_a_plan_that_cannot_be_bought_after_signing_in_is_explained_on_the_pricing_page(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    session = await register(client, "pat@example.com")
    async with context.database.sessionmaker() as db:
        await apply_subscription_state(db, app_store_subscription(uuid.UUID(session["account"]["id"])))
        await db.commit()
    page = await client.get("/account/sign-in?next=/pricing&product=pro_yearly")
    response = await client.post(
        "/account/sign-in",
        data={
            "csrf_token": csrf_of(page),
            "email": "pat@example.com",
            "password": DEFAULT_PASSWORD,
            "product": "pro_yearly",
        },
    )
    assert response.status_code == 409
    assert 'id="error"' in response.text and "App Store" in response.text
    assert 'id="app-store-notice"' in response.text
    # Signed in all the same.
    assert (await client.get("/account")).status_code == 200
