"""Sign in with Apple and Google on the hosted pages, over HTTP, through the providers' stand-ins.

The httpx client is the browser (it keeps cookies); the stand-ins serve the providers' authorization
pages, and the test submits their "Continue" form back to the app as a browser would.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.app import create_app
from entitle.context import AppContext
from entitle.core.models.accounts import Account, AppleSigninToken, Identity
from entitle.providers.stripe.catalog_push import push_catalog
from entitle.web.pages import sign_in_state
from entitle.web.pages.visits import SESSION_COOKIE
from tests.providers.stripe.conftest import stripe_settings
from tests.standins.apple_signin_api import AppleSigninApiStandin
from tests.standins.authorize_page import read_forms
from tests.standins.jwks_server import (
    APPLE_BUNDLE_ID,
    APPLE_SERVICES_ID,
    GOOGLE_IOS_CLIENT_ID,
    GOOGLE_WEB_CLIENT_ID,
    JwksStandin,
)
from tests.standins.stripe import StripeStandin

Form = tuple[str, dict[str, str]]


@pytest.fixture
def idp() -> Iterator[JwksStandin]:
    with JwksStandin() as standin:
        yield standin


@pytest.fixture
def apple(idp: JwksStandin) -> Iterator[AppleSigninApiStandin]:
    with AppleSigninApiStandin(signer=idp) as standin:
        yield standin


@pytest.fixture
def stripe() -> Iterator[StripeStandin]:
    with StripeStandin() as standin:
        yield standin


@pytest.fixture
def settings_overrides(
    idp: JwksStandin,
    apple: AppleSigninApiStandin,
    stripe: StripeStandin,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "apple_signin_client_ids": [APPLE_BUNDLE_ID, APPLE_SERVICES_ID],
        "apple_signin_jwks_url": idp.url,
        "apple_signin_team_id": apple.team_id,
        "apple_signin_key_id": apple.key_id,
        "apple_signin_private_key_path": apple.write_key(tmp_path),
        "apple_signin_api_base": apple.url,
        "apple_signin_web_client_id": APPLE_SERVICES_ID,
        "google_client_ids": [GOOGLE_WEB_CLIENT_ID, GOOGLE_IOS_CLIENT_ID],
        "google_jwks_url": idp.url,
        "google_web_client_id": GOOGLE_WEB_CLIENT_ID,
        "google_auth_url": idp.authorize_url,
        **stripe_settings(stripe),
    }
    overrides.update(getattr(request, "param", {}))
    return overrides


async def provider_page(client: httpx.AsyncClient, start: str) -> dict[str, Form]:
    """Click "Sign in with ..." and open the provider's page; its forms by button label."""
    started = await client.get(start)
    assert started.status_code == 303, started.text
    async with httpx.AsyncClient() as outside:  # the provider's site, not ours: no cookies of ours
        page = await outside.get(started.headers["location"])
    assert page.status_code == 200, page.text
    return read_forms(page.text)


async def submit(client: httpx.AsyncClient, form: Form) -> httpx.Response:
    action, fields = form
    return await client.post(action, data=fields)


async def accounts(context: AppContext) -> list[Account]:
    async with context.database.sessionmaker() as db:
        return list((await db.scalars(select(Account))).all())


def signed_in(client: httpx.AsyncClient) -> bool:
    return SESSION_COOKIE in client.cookies


async def test_the_sign_in_page_links_to_both_providers(client: httpx.AsyncClient) -> None:
    page = await client.get("/account/sign-in?next=/pricing&product=pro_monthly")
    assert "/account/sign-in/apple?next=%2Fpricing&amp;product=pro_monthly" in page.text
    assert "/account/sign-in/google?next=%2Fpricing&amp;product=pro_monthly" in page.text


async def test_a_new_person_signs_in_with_apple_and_the_refresh_token_is_kept(
    client: httpx.AsyncClient, context: AppContext, apple: AppleSigninApiStandin
) -> None:
    forms = await provider_page(client, "/account/sign-in/apple?next=/account")
    [query] = apple.authorize_requests
    assert query["client_id"] == APPLE_SERVICES_ID
    assert query["redirect_uri"] == "http://testserver/account/sign-in/apple/callback"
    assert (query["response_type"], query["response_mode"], query["scope"]) == (
        "code id_token",
        "form_post",
        "name email",
    )
    assert "user" in forms["Continue"][1]  # the first authorization carries the name

    landed = await submit(client, forms["Continue"])
    assert landed.status_code == 303, (landed.text, apple.refusals)
    assert landed.headers["location"] == "/account" and signed_in(client)
    page = await client.get("/account")
    assert page.status_code == 200 and "pat@example.com" in page.text

    [account] = await accounts(context)
    assert account.name == "Pat Person"
    async with context.database.sessionmaker() as db:
        [kept] = (await db.scalars(select(AppleSigninToken))).all()
    [issued] = apple.refresh_tokens
    assert (kept.account_id, kept.client_id) == (account.id, APPLE_SERVICES_ID)
    assert kept.refresh_token_encrypted is not None
    assert context.accounts.secret_box.decrypt(kept.refresh_token_encrypted) == issued


async def test_a_new_person_signs_in_with_google(
    client: httpx.AsyncClient, context: AppContext, idp: JwksStandin
) -> None:
    forms = await provider_page(client, "/account/sign-in/google?next=/account/delete")
    [query] = idp.authorize_requests
    assert query["client_id"] == GOOGLE_WEB_CLIENT_ID and query["prompt"] == "select_account"
    assert query["redirect_uri"] == "http://testserver/account/sign-in/google/callback"
    assert (query["response_type"], query["scope"]) == ("id_token", "openid email profile")

    landed = await submit(client, forms["Continue"])
    assert landed.status_code == 303 and landed.headers["location"] == "/account/delete"
    assert signed_in(client)
    assert (await client.get("/account")).status_code == 200
    [account] = await accounts(context)
    assert account.email == "pat@gmail.com"
    async with context.database.sessionmaker() as db:
        [identity] = (await db.scalars(select(Identity).where(Identity.account_id == account.id))).all()
    assert (identity.provider, identity.email_verified) == ("google", True)


async def test_the_web_and_the_app_land_in_one_account(
    client: httpx.AsyncClient, context: AppContext, idp: JwksStandin
) -> None:
    person = idp.google_person
    token = idp.google_token(aud=GOOGLE_WEB_CLIENT_ID, **person)
    assert (await client.post("/v1/auth/google", json={"id_token": token})).status_code == 201
    forms = await provider_page(client, "/account/sign-in/google")
    assert (await submit(client, forms["Continue"])).status_code == 303
    assert len(await accounts(context)) == 1


async def test_a_chosen_plan_continues_to_stripe_checkout(
    client: httpx.AsyncClient, context: AppContext, stripe: StripeStandin
) -> None:
    await push_catalog(context.providers["stripe"].gateway, context.catalog)
    forms = await provider_page(client, "/account/sign-in/apple?next=/pricing&product=pro_monthly")
    landed = await submit(client, forms["Continue"])
    assert landed.status_code == 303, landed.text
    assert landed.headers["location"].startswith(f"{stripe.base_url}/c/pay/cs_")
    [session] = stripe.state.all("checkout.session")
    [account] = await accounts(context)
    assert session["client_reference_id"] == str(account.id)


async def test_a_replayed_answer_is_refused(client: httpx.AsyncClient, context: AppContext) -> None:
    forms = await provider_page(client, "/account/sign-in/google")
    assert (await submit(client, forms["Continue"])).status_code == 303

    # Posted again by the same browser: the state was used up with its cookie.
    again = await submit(client, forms["Continue"])
    assert again.status_code == 400 and "another browser window" in again.text
    # Posted by someone else who got hold of it: no session for them.
    transport = httpx.ASGITransport(app=create_app(context=context))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        stolen = await submit(other, forms["Continue"])
        assert stolen.status_code == 400 and not signed_in(other)


async def test_a_replayed_apple_code_is_refused(client: httpx.AsyncClient) -> None:
    forms = await provider_page(client, "/account/sign-in/apple")
    first = forms["Continue"]
    assert (await submit(client, first)).status_code == 303
    # A new flow in the same browser (fresh cookie and state), answered with the old token and code.
    second = (await provider_page(client, "/account/sign-in/apple"))["Continue"]
    client.cookies.delete(SESSION_COOKIE)
    replay = (second[0], second[1] | {"code": first[1]["code"]})
    refused = await submit(client, replay)
    assert refused.status_code == 400 and "already used or took too long" in refused.text
    assert not signed_in(client)


@pytest.mark.parametrize("tamper", ["payload", "signature", "non_ascii_signature", "provider", "missing"])
async def test_a_forged_state_is_refused(client: httpx.AsyncClient, tamper: str) -> None:
    action, fields = (await provider_page(client, "/account/sign-in/google"))["Continue"]
    payload, mac = fields["state"].split(".")
    if tamper == "payload":
        fields["state"] = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + mac
    elif tamper == "signature":
        fields["state"] = payload + "." + mac[::-1]
    elif tamper == "non_ascii_signature":
        fields["state"] = payload + ".é" + mac[1:]
    elif tamper == "provider":
        action = action.replace("/google/", "/apple/")
    else:
        del fields["state"]
    refused = await client.post(action, data=fields)
    assert refused.status_code == 400 and "did not start here or took too long" in refused.text
    assert not signed_in(client)


async def test_a_token_with_another_nonce_is_refused(
    client: httpx.AsyncClient, context: AppContext, idp: JwksStandin
) -> None:
    action, fields = (await provider_page(client, "/account/sign-in/apple"))["Continue"]
    fields["id_token"] = idp.apple_token(aud=APPLE_SERVICES_ID, sub="001234.web.person", nonce="not-this-one")
    refused = await client.post(action, data=fields)
    assert refused.status_code == 401 and "Apple could not confirm who you are" in refused.text
    assert not signed_in(client) and await accounts(context) == []


async def test_an_apple_token_without_a_nonce_is_refused_on_the_web(
    client: httpx.AsyncClient, idp: JwksStandin
) -> None:
    # The API lets devices that cannot carry a nonce through; the web flow always can.
    action, fields = (await provider_page(client, "/account/sign-in/apple"))["Continue"]
    fields["id_token"] = idp.apple_token(
        aud=APPLE_SERVICES_ID, sub="001234.web.person", nonce_supported=False
    )
    refused = await client.post(action, data=fields)
    assert refused.status_code == 401 and not signed_in(client)


@pytest.mark.parametrize("provider", ["apple", "google"])
async def test_a_token_for_the_app_is_refused_on_the_web(
    client: httpx.AsyncClient, idp: JwksStandin, apple: AppleSigninApiStandin, provider: str
) -> None:
    # The iOS app's client id is trusted by the API, but the web flow asked for the web's.
    action, fields = (await provider_page(client, f"/account/sign-in/{provider}"))["Continue"]
    if provider == "apple":
        nonce = apple.authorize_requests[0]["nonce"]
        fields["id_token"] = idp.apple_token(aud=APPLE_BUNDLE_ID, sub="001234.web.person", nonce=nonce)
    else:
        nonce = idp.authorize_requests[0]["nonce"]
        fields["id_token"] = idp.google_token(aud=GOOGLE_IOS_CLIENT_ID, nonce=nonce)
    refused = await client.post(action, data=fields)
    assert refused.status_code == 401 and "could not confirm who you are" in refused.text
    assert not signed_in(client)


async def test_an_expired_state_is_refused(
    client: httpx.AsyncClient, context: AppContext, idp: JwksStandin
) -> None:
    state, signed, cookie = sign_in_state.start(
        context, "google", next_path="/account", product="", now=time.time() - 601
    )
    client.cookies.set(sign_in_state.BINDING_COOKIE, cookie)
    token = idp.google_token(aud=GOOGLE_WEB_CLIENT_ID, nonce=state.nonce)
    refused = await client.post("/account/sign-in/google/callback", data={"id_token": token, "state": signed})
    assert refused.status_code == 400 and "took too long" in refused.text and not signed_in(client)


async def test_canceling_at_the_provider_shows_the_sign_in_page(client: httpx.AsyncClient) -> None:
    forms = await provider_page(client, "/account/sign-in/apple?next=/pricing&product=pro_yearly")
    canceled = await submit(client, forms["Cancel"])
    assert canceled.status_code == 200 and "Sign in with Apple was canceled." in canceled.text
    # The chosen plan is still carried by the page's forms.
    assert 'name="product" value="pro_yearly"' in canceled.text and not signed_in(client)


async def test_a_callback_that_is_not_a_form_is_a_page_not_a_500(client: httpx.AsyncClient) -> None:
    answer = await client.post("/account/sign-in/google/callback", json={"state": "x"})
    assert answer.status_code == 422 and "text/html" in answer.headers["content-type"]


@pytest.mark.parametrize(
    "settings_overrides",
    [{"google_web_client_id": None, "apple_signin_client_ids": [APPLE_BUNDLE_ID]}],
    indirect=True,
)
async def test_unconfigured_providers_say_so_to_the_person_and_name_the_setting_in_the_log(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    page = await client.get("/account/sign-in")
    assert "/account/sign-in/google" not in page.text
    google = await client.get("/account/sign-in/google")
    assert google.status_code == 503 and "Sign in with Google isn&#39;t available right now." in google.text
    apple = await client.get("/account/sign-in/apple")
    assert apple.status_code == 503 and "Sign in with Apple isn&#39;t available right now." in apple.text
    assert "ENTITLE_" not in google.text + apple.text
    assert "ENTITLE_GOOGLE_WEB_CLIENT_ID" in caplog.text and "ENTITLE_APPLE_SIGNIN_CLIENT_IDS" in caplog.text
