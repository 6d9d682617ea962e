"""Pay first, the account after (ENTITLE_GUEST_CHECKOUT): a visitor pays on Checkout, and whoever proves the
right to it claims it: the browser that paid, the mailed redemption link, or an operator. Every refusal:
another browser's cookie, a used or expired link (410), an account that already pays (409, nothing moves),
an address that already has an account (sign in), guest checkout off (the 401 of before)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from entitle.app import create_app
from entitle.context import AppContext
from entitle.core.models.events import AccountEvent, ProviderEvent
from entitle.core.models.guest import GuestCheckout
from entitle.core.models.mail import OutboundMail
from entitle.db.types import utcnow
from entitle.providers.stripe.models import StripeCustomer
from entitle.services.identity import operators
from tests.conftest import SettlingTransport
from tests.factories import DEFAULT_PASSWORD, bearer, register
from tests.providers.stripe.conftest import stripe_settings
from tests.standins.stripe import StripeStandin
from tests.web.test_pages import csrf_of, deliver_all, mail_token, sign_up, subscribed

pytestmark = pytest.mark.usefixtures("pushed")


@pytest.fixture
def settings_overrides(standin: StripeStandin, request: pytest.FixtureRequest) -> dict[str, Any]:
    return stripe_settings(standin) | {"guest_checkout": True} | getattr(request, "param", {})


@pytest.fixture
async def other_browser(context: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """A second browser: the same app, none of the first one's cookies."""
    async with httpx.AsyncClient(
        transport=SettlingTransport(create_app(context=context), context), base_url="http://testserver"
    ) as http:
        yield http


async def pay_as_visitor(
    client: httpx.AsyncClient, standin: StripeStandin, email: str, product: str = "pro_monthly"
) -> dict[str, Any]:
    """A visitor picks `product` on /pricing and pays on the stand-in's Checkout typing `email`."""
    pricing = await client.get("/pricing")
    action = "/pricing/buy" if product in ("pro_lifetime", "credits_100") else "/pricing/subscribe"
    to_stripe = await client.post(action, data={"csrf_token": csrf_of(pricing), "product": product})
    assert to_stripe.status_code == 303, to_stripe.text
    session = standin.state.all("checkout.session")[-1]
    assert to_stripe.headers["location"] == session["url"]
    standin.complete_checkout(session["id"], email=email)
    return dict(session)


async def guest_rows(context: AppContext) -> list[GuestCheckout]:
    async with context.database.sessionmaker() as db:
        return list((await db.scalars(select(GuestCheckout))).all())


async def mails(context: AppContext, template: str) -> list[OutboundMail]:
    async with context.database.sessionmaker() as db:
        return list((await db.scalars(select(OutboundMail).where(OutboundMail.template == template))).all())


async def test_a_visitor_pays_then_creates_the_account_on_the_success_page(
    client: httpx.AsyncClient, standin: StripeStandin, context: AppContext
) -> None:
    pricing = await client.get("/pricing")
    chosen = await client.post(
        "/pricing/subscribe", data={"csrf_token": csrf_of(pricing), "product": "pro_monthly"}
    )
    # Straight to Stripe: no sign-in page first, Stripe asks for the email.
    assert chosen.status_code == 303
    [session] = standin.state.all("checkout.session")
    assert chosen.headers["location"] == session["url"]
    assert session["customer"] is None and session["customer_email"] is None
    assert session["metadata"]["entitle_guest"] == "true" and "account_id" not in session["metadata"]
    assert "account_id" not in session["_subscription_data"]["metadata"]
    assert "entitle_guest" in chosen.headers["set-cookie"] and "HttpOnly" in chosen.headers["set-cookie"]
    [row] = await guest_rows(context)
    assert row.status == "open" and row.browser_hash and len(row.browser_hash) == 64

    standin.complete_checkout(session["id"], email="Visitor@Example.com")
    # Back from Stripe before any webhook: the page reads the session itself.
    page = await client.get(f"/checkout/success?product=pro_monthly&session_id={session['id']}")
    assert page.status_code == 200
    assert 'data-state="create"' in page.text and "Paid: one step left" in page.text
    assert 'value="visitor@example.com"' in page.text and "Pro, monthly" in page.text
    assert "ENTITLE_" not in page.text
    [paid_mail] = await mails(context, "guest_paid")
    assert paid_mail.to == "visitor@example.com"
    [row] = await guest_rows(context)
    assert row.status == "paid" and row.token_hash and row.token_hash != paid_mail.data["token"]

    claimed = await client.post(
        "/checkout/claim",
        data={
            "csrf_token": csrf_of(page),
            "action": "sign_up",
            "session_id": session["id"],
            "email": "visitor@example.com",
            "password": DEFAULT_PASSWORD,
        },
    )
    assert claimed.status_code == 303 and claimed.headers["location"] == "/account?notice=claimed"
    account = await client.get(claimed.headers["location"])
    assert "Your purchase is in your account" in account.text
    assert "Pro, monthly" in account.text and "Renews on" in account.text
    [row] = await guest_rows(context)
    assert row.status == "claimed" and row.claimed_by == "browser"
    # The customer Stripe made for the guest is the account's now.
    guest_customer = standin.state.get(session["id"], "checkout.session")["customer"]
    async with context.database.sessionmaker() as db:
        kept = await db.get(StripeCustomer, row.claimed_account_id)
    assert kept is not None and kept.customer_id == guest_customer
    assert len(await mails(context, "guest_claimed")) == 1

    # The webhooks arrive late: nothing is recorded or mailed twice, and the plan stays.
    await deliver_all(client, standin)
    assert len(await mails(context, "guest_paid")) == 1
    assert "Pro, monthly" in (await client.get("/account")).text
    # The mailed link was for the same purchase: it says it was already added.
    link = await client.get(f"/redeem?token={paid_mail.data['token']}")
    assert link.status_code == 303 and link.headers["location"] == "/account?notice=claimed"


async def test_the_webhook_holds_a_payment_the_browser_never_came_back_for(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, standin: StripeStandin, context: AppContext
) -> None:
    session = await pay_as_visitor(client, standin, "walked-away@example.com")
    await deliver_all(client, standin)
    [row] = await guest_rows(context)
    assert row.status == "paid" and row.email == "walked-away@example.com"
    assert row.store_subscription_id and row.store_customer_id
    assert len(await mails(context, "guest_paid")) == 1
    # Nobody's account got it on the strength of the typed address, and the guest's events were
    # acknowledged, none failed (none asks Stripe about the unknown customer before its batch's read).
    async with context.database.sessionmaker() as db:
        assert await db.scalar(select(func.count()).select_from(StripeCustomer)) == 0
        statuses = set((await db.scalars(select(ProviderEvent.status))).all())
    assert statuses == {"processed"}

    # Another browser (not holding the cookie) cannot claim it from the success page, nor read its status.
    theirs = await other_browser.get(f"/checkout/success?session_id={session['id']}")
    assert 'data-state="create"' not in theirs.text
    page = await other_browser.get("/account/sign-in")
    refused = await other_browser.post(
        "/checkout/claim",
        data={
            "csrf_token": csrf_of(page),
            "action": "sign_up",
            "session_id": session["id"],
            "email": "thief@example.com",
            "password": DEFAULT_PASSWORD,
        },
    )
    assert refused.status_code == 404 and "Open the link from your email" in refused.text
    status = await other_browser.get(f"/v1/billing/stripe/checkout/{session['id']}")
    assert status.status_code == 404
    mine = await client.get(f"/v1/billing/stripe/checkout/{session['id']}")
    assert mine.status_code == 200
    assert mine.json() | {"claimed": False} == {
        "id": session["id"],
        "status": "complete",
        "payment_status": "paid",
        "product": "pro_monthly",
        "fulfilled": False,
        "claimed": False,
    }
    [row] = await guest_rows(context)
    assert row.status == "paid"


async def test_an_address_with_an_account_is_asked_to_sign_in(
    client: httpx.AsyncClient, standin: StripeStandin, context: AppContext
) -> None:
    await register(client, "taken@example.com")
    session = await pay_as_visitor(client, standin, "taken@example.com")
    page = await client.get(f"/checkout/success?session_id={session['id']}")
    assert 'data-state="existing"' in page.text and 'id="create-account"' not in page.text
    assert "There is already an account for" in page.text
    [mail] = await mails(context, "guest_paid_existing")
    assert mail.to == "taken@example.com"
    # A new account with that address is refused; a wrong password changes nothing.
    wrong = await client.post(
        "/checkout/claim",
        data={
            "csrf_token": csrf_of(page),
            "action": "sign_in",
            "session_id": session["id"],
            "email": "taken@example.com",
            "password": "not the password at all",
        },
    )
    assert wrong.status_code == 401 and 'id="guest-error"' in wrong.text
    [row] = await guest_rows(context)
    assert row.status == "paid"
    signed_in = await client.post(
        "/checkout/claim",
        data={
            "csrf_token": csrf_of(wrong),
            "action": "sign_in",
            "session_id": session["id"],
            "email": "taken@example.com",
            "password": DEFAULT_PASSWORD,
        },
    )
    assert signed_in.headers["location"] == "/account?notice=claimed"
    assert "Pro, monthly" in (await client.get("/account")).text


async def test_the_mailed_link_redeems_in_the_app_once(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, standin: StripeStandin, context: AppContext
) -> None:
    await pay_as_visitor(client, standin, "linked@example.com")
    await deliver_all(client, standin)
    token = await mail_token(context, "guest_paid")
    # Opening the link spends nothing (mail scanners open links too).
    page = await other_browser.get(f"/redeem?token={token}")
    assert page.status_code == 200 and 'data-state="create"' in page.text
    assert "Add Pro, monthly to your account" in page.text

    app_user = await register(other_browser, "someone-else@example.com")
    redeemed = await other_browser.post("/v1/me/redemptions", json={"token": token}, headers=bearer(app_user))
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["entitlements"]["pro"]["active"] is True
    assert redeemed.json()["subscriptions"][0]["product"] == "pro_monthly"
    again = await other_browser.post("/v1/me/redemptions", json={"token": token}, headers=bearer(app_user))
    assert again.status_code == 410 and again.json()["error"]["code"] == "redemption_expired"
    used = await client.get(f"/redeem?token={token}")
    assert used.status_code == 410 and 'data-state="link_claimed"' in used.text
    unknown = await other_browser.post(
        "/v1/me/redemptions", json={"token": "x" * 43}, headers=bearer(app_user)
    )
    assert unknown.status_code == 410


async def test_an_expired_link_is_refused(
    client: httpx.AsyncClient, standin: StripeStandin, context: AppContext
) -> None:
    await pay_as_visitor(client, standin, "late@example.com")
    await deliver_all(client, standin)
    token = await mail_token(context, "guest_paid")
    async with context.database.transaction() as db:
        await db.execute(update(GuestCheckout).values(token_expires_at=utcnow() - timedelta(seconds=1)))
    person = await register(client, "late@example.com")
    expired = await client.post("/v1/me/redemptions", json={"token": token}, headers=bearer(person))
    assert expired.status_code == 410 and expired.json()["error"]["code"] == "redemption_expired"
    page = await client.get(f"/redeem?token={token}")
    assert page.status_code == 410 and "This link has expired" in page.text
    [row] = await guest_rows(context)
    assert row.status == "paid"
    # A new link goes to the Checkout address (and only there); the old one stays dead.
    resent = await client.post("/redeem/resend", data={"csrf_token": csrf_of(page), "token": token})
    assert resent.status_code == 200 and 'data-state="link_resent"' in resent.text
    sent = await mails(context, "guest_paid_existing")
    assert [m.to for m in sent] == ["late@example.com"]
    fresh = str(sent[-1].data["token"])
    assert fresh != token
    again = await client.post("/v1/me/redemptions", json={"token": token}, headers=bearer(person))
    assert again.status_code == 410
    redeemed = await client.post("/v1/me/redemptions", json={"token": fresh}, headers=bearer(person))
    assert redeemed.status_code == 200 and redeemed.json()["entitlements"]["pro"]["active"] is True


async def test_an_account_that_already_pays_is_refused_and_nothing_moves(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, standin: StripeStandin, context: AppContext
) -> None:
    await subscribed(other_browser, standin)  # pat@example.com pays for Pro already
    before = standin.events.log[:]
    await pay_as_visitor(client, standin, "pat@example.com")
    await deliver_all(client, standin)
    token = await mail_token(context, "guest_paid_existing")
    page = await other_browser.get(f"/redeem?token={token}")
    assert 'data-state="confirm"' in page.text and "pat@example.com" in page.text
    refused = await other_browser.post("/redeem", data={"csrf_token": csrf_of(page), "token": token})
    assert refused.status_code == 409 and 'data-state="refused"' in refused.text
    assert "already has" in refused.text and "Nothing was added" in refused.text
    [row] = await guest_rows(context)
    assert row.status == "paid" and row.token_used_at is None and row.claimed_account_id is None
    session = await register(client, "second@example.com")
    assert before  # the account's own subscription, unchanged:
    login = await other_browser.post(
        "/v1/auth/login", json={"email": "pat@example.com", "password": DEFAULT_PASSWORD}
    )
    api = await other_browser.post("/v1/me/redemptions", json={"token": token}, headers=bearer(login.json()))
    assert api.status_code == 409 and api.json()["error"]["code"] == "already_subscribed"
    answer = (await other_browser.get("/v1/me/entitlements", headers=bearer(login.json()))).json()
    assert [s["id"] for s in answer["subscriptions"]] != [row.store_subscription_id]
    assert row.store_subscription_id not in [s["id"] for s in answer["subscriptions"]]
    # Someone else may still redeem the link (it proves the address, not an account).
    other = await client.post("/v1/me/redemptions", json={"token": token}, headers=bearer(session))
    assert other.status_code == 200


async def test_a_one_time_purchase_through_the_api_without_a_token(
    client: httpx.AsyncClient, standin: StripeStandin, context: AppContext
) -> None:
    started = await client.post("/v1/billing/stripe/checkout", json={"product": "credits_100", "quantity": 2})
    assert started.status_code == 200, started.text
    session = standin.state.get(started.json()["id"], "checkout.session")
    assert session["mode"] == "payment" and session["customer_creation"] == "always"
    assert "entitle_guest" in started.headers["set-cookie"]
    standin.complete_checkout(session["id"], email="packs@example.com")
    await deliver_all(client, standin)
    token = await mail_token(context, "guest_paid")
    person = await register(client, "packs-account@example.com")
    redeemed = await client.post("/v1/me/redemptions", json={"token": token}, headers=bearer(person))
    assert redeemed.status_code == 200
    assert redeemed.json()["balances"] == {"credits": 200}
    assert [(p["product"], p["quantity"]) for p in redeemed.json()["purchases"]] == [("credits_100", 2)]


@pytest.mark.parametrize("settings_overrides", [{"guest_checkout": False}], indirect=True)
async def test_guest_checkout_off_keeps_the_401(client: httpx.AsyncClient, standin: StripeStandin) -> None:
    refused = await client.post("/v1/billing/stripe/checkout", json={"product": "pro_monthly"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "missing_token"
    pricing = await client.get("/pricing")
    chosen = await client.post(
        "/pricing/subscribe", data={"csrf_token": csrf_of(pricing), "product": "pro_monthly"}
    )
    assert chosen.headers["location"].startswith("/account/sign-in")
    assert standin.state.all("checkout.session") == []


async def test_a_bad_token_is_not_taken_for_a_visitor(
    client: httpx.AsyncClient, standin: StripeStandin
) -> None:
    refused = await client.post(
        "/v1/billing/stripe/checkout", json={"product": "pro_monthly"}, headers=bearer("not-a-token")
    )
    assert refused.status_code == 401
    assert standin.state.all("checkout.session") == []


async def test_an_operator_attaches_an_unclaimed_purchase(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, standin: StripeStandin, context: AppContext
) -> None:
    await pay_as_visitor(other_browser, standin, "lost-mail@example.com")
    await deliver_all(client, standin)
    await register(client, "found@example.com")
    await sign_up(client, "operator@example.com")
    async with context.database.transaction() as db:
        await operators.add_operator(db, "operator@example.com", added_by="test")
    home = await client.get("/admin")
    assert home.status_code == 200 and "lost-mail@example.com" in home.text
    [row] = await guest_rows(context)
    attached = await client.post(
        f"/admin/guest-checkouts/{row.id}/attach",
        data={"csrf_token": csrf_of(home), "email": "found@example.com"},
    )
    assert attached.status_code == 303, attached.text
    account_page = await client.get(attached.headers["location"])
    assert "is now in this account" in account_page.text and "stripe pro_monthly" in account_page.text
    [row] = await guest_rows(context)
    assert row.status == "claimed" and row.claimed_by == "operator"
    async with context.database.sessionmaker() as db:
        audit = (
            await db.scalars(
                select(AccountEvent).where(
                    AccountEvent.account_id == row.claimed_account_id,
                    AccountEvent.type == operators.OPERATOR_ACTION,
                )
            )
        ).all()
    assert [(e.data["action"], e.data["by"], e.data["email"]) for e in audit] == [
        ("guest_checkout.attached", "operator@example.com", "lost-mail@example.com")
    ]
    assert "lost-mail@example.com" not in (await client.get("/admin")).text


@pytest.mark.parametrize(
    "settings_overrides",
    [{"ios_app_id_prefix": "ABCDE12345", "apple_bundle_id": "com.example.app"}],
    indirect=True,
)
async def test_the_universal_link_file(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/apple-app-site-association")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == {
        "applinks": {
            "details": [{"appIDs": ["ABCDE12345.com.example.app"], "components": [{"/": "/redeem"}]}]
        }
    }


async def test_no_universal_link_file_without_an_app(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/apple-app-site-association")
    assert response.status_code == 404 and response.json()["error"]["code"] == "no_universal_links"
    assert re.search("ENTITLE_", response.text) is None


async def test_back_on_the_success_page_signed_in_a_subscriber_is_refused_and_nothing_moves(
    client: httpx.AsyncClient, standin: StripeStandin, context: AppContext
) -> None:
    await subscribed(client, standin)  # pat@example.com, signed in, pays for Pro
    account = await client.get("/account")
    await client.post("/account/sign-out", data={"csrf_token": csrf_of(account)})
    session = await pay_as_visitor(client, standin, "pat@example.com", "pro_yearly")
    page = await client.get("/account/sign-in")
    await client.post(
        "/account/sign-in",
        data={"csrf_token": csrf_of(page), "email": "pat@example.com", "password": DEFAULT_PASSWORD},
    )
    refused = await client.get(f"/checkout/success?product=pro_yearly&session_id={session['id']}")
    assert refused.status_code == 409 and 'data-state="refused"' in refused.text
    assert "Nothing was added" in refused.text
    [guest] = [row for row in await guest_rows(context) if row.checkout_id == session["id"]]
    assert guest.status == "paid" and guest.claimed_account_id is None
    account = await client.get("/account")
    assert "Pro, monthly" in account.text and str(guest.store_subscription_id) not in account.text
