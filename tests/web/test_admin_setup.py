"""/admin/setup and the first run over HTTP: the first operator, cards, saving keys, secrets kept out."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.context import AppContext, build_context
from entitle.core.models.events import AccountEvent
from entitle.services.identity import operators
from entitle.services.setup.first_run import announce_first_run
from tests.conftest import make_settings
from tests.standins.stripe import StripeStandin
from tests.web.test_admin_pages import operator  # noqa: F401  (the signed-in operator fixture)
from tests.web.test_pages import csrf_of, post_form

SECRET = "sk_test_" + "Zq7" * 10
PASSWORD = "correct horse battery"


@pytest.fixture
def standin() -> Iterator[StripeStandin]:
    # The Stripe card proves the keys it shows with a read at Stripe: here, a stand-in that knows SECRET.
    with StripeStandin(secret_key=SECRET) as running:
        yield running


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    return {"stripe_api_base": standin.base_url}


def _path(url: str) -> str:
    return url.removeprefix("http://testserver")


async def test_the_first_run_link_makes_the_first_operator_once(
    client: httpx.AsyncClient, context: AppContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    url = await announce_first_run(context)
    assert url is not None and url in caplog.text
    page = await client.get(_path(url))
    assert page.status_code == 200 and "Make the first operator" in page.text
    token = url.split("token=", 1)[1]
    made = await client.post(
        "/admin/first-run",
        data={
            "csrf_token": csrf_of(page),
            "token": token,
            "email": "owner@example.com",
            "password": PASSWORD,
        },
    )
    assert made.status_code == 303 and made.headers["location"] == "/admin/setup"
    setup = await client.get("/admin/setup")
    assert setup.status_code == 200 and "Stripe" in setup.text
    async with context.database.sessionmaker() as db:
        assert [account.email for account, _ in await operators.list_operators(db)] == ["owner@example.com"]

    # Spent: the link, and any other, now sends people to sign in.
    again = await client.get(_path(url))
    assert again.status_code == 410 and "already used" in again.text
    assert await announce_first_run(context) is None


async def test_a_first_run_link_stops_working_once_an_operator_exists(
    client: httpx.AsyncClient,
    context: AppContext,
    operator: str,  # noqa: F811
) -> None:
    assert await announce_first_run(context) is None


async def test_an_unknown_first_run_token_is_refused(client: httpx.AsyncClient) -> None:
    page = await client.get("/admin/first-run?token=nope")
    assert page.status_code == 410
    form = await client.get("/account/sign-in")
    refused = await client.post(
        "/admin/first-run",
        data={"csrf_token": csrf_of(form), "token": "nope", "email": "x@example.com", "password": PASSWORD},
    )
    assert refused.status_code == 410 and "already used" in refused.text


async def test_the_first_run_page_offers_no_provider_buttons_unless_configured(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    url = await announce_first_run(context)
    assert url is not None
    page = await client.get(_path(url))
    assert page.status_code == 200
    assert "Continue with Google" not in page.text and "Continue with Apple" not in page.text


async def test_finishing_a_first_run_needs_the_link_and_a_sign_in(
    client: httpx.AsyncClient, context: AppContext
) -> None:
    url = await announce_first_run(context)
    assert url is not None
    token = url.split("token=", 1)[1]
    # Without the link's cookie: nothing to finish.
    finish = await client.get("/admin/first-run/finish")
    assert finish.status_code == 410 and "already used" in finish.text
    # An unknown provider, and a spent or unknown link, are refused before anyone signs in anywhere.
    assert (await client.get(f"/admin/first-run/github?token={token}")).status_code == 404
    assert (await client.get("/admin/first-run/google?token=nope")).status_code == 410
    # With the link, but back not signed in (canceled at the provider): the link is offered again.
    started = await client.get(f"/admin/first-run/google?token={token}")
    assert started.status_code == 303
    assert started.headers["location"] == "/account/sign-in/google?next=%2Fadmin%2Ffirst-run%2Ffinish"
    assert token not in started.headers["location"]
    back = await client.get("/admin/first-run/finish")
    assert back.status_code == 303 and back.headers["location"] == _path(url)
    form = await client.get("/account/sign-in")
    refused = await client.post("/admin/first-run/finish", data={"csrf_token": csrf_of(form)})
    assert refused.status_code == 410 and "Sign in with Apple or Google first" in refused.text
    async with context.database.sessionmaker() as db:
        assert await operators.list_operators(db) == []


async def test_setup_is_for_operators_only(client: httpx.AsyncClient) -> None:
    away = await client.get("/admin/setup")
    assert away.status_code == 303 and away.headers["location"].startswith("/account/sign-in")


async def test_saving_stripe_keys_configures_stripe_and_never_shows_the_secret(
    client: httpx.AsyncClient,
    context: AppContext,
    operator: str,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    before = await client.get("/admin/setup")
    assert 'data-state="not_set"' in before.text
    saved = await post_form(
        client,
        "/admin/setup",
        "/admin/setup/stripe",
        {"stripe_secret_key": SECRET, "stripe_publishable_key": "pk_test_123"},
    )
    assert saved.status_code == 303, saved.text
    status = (await client.get("/v1/status")).json()
    assert status["stores"]["stripe"] == {"configured": True, "mode": "test"}

    page = await client.get("/admin/setup?notice=saved")
    card = re.search(r'<section[^>]*id="card-stripe".*?</section>', page.text, re.S)
    assert card is not None and 'data-state="set"' in card.group(0)
    assert "Saved; paste a new one to replace it" in card.group(0)
    assert 'value="pk_test_123"' in card.group(0)
    # The secret is nowhere: not the page, not an answer, not the log, not the audit trail.
    async with context.database.sessionmaker() as db:
        events = (await db.scalars(select(AccountEvent))).all()
    audit = [event.data for event in events if event.data.get("action") == "settings.saved"]
    assert audit and audit[0]["saved"] == ["stripe_publishable_key", "stripe_secret_key"]
    for text in (page.text, status.__repr__(), caplog.text, repr([event.data for event in events])):
        assert SECRET not in text
    assert "ENTITLE_" not in page.text

    # An empty secret field keeps the saved key.
    kept = await post_form(client, "/admin/setup", "/admin/setup/stripe", {"stripe_secret_key": ""})
    assert kept.status_code == 303
    assert context.settings.stripe_secret_key is not None


async def test_a_bad_value_is_shown_on_its_card(
    client: httpx.AsyncClient,
    operator: str,  # noqa: F811
) -> None:
    refused = await post_form(client, "/admin/setup", "/admin/setup/mail", {"smtp_url": "mail.example.com"})
    assert refused.status_code == 422
    assert 'id="error-mail"' in refused.text and "Smtp url" in refused.text


async def test_a_setting_from_the_environment_has_no_input(
    database_url: str, signing_key: Any, standin: StripeStandin
) -> None:
    from entitle.app import create_app
    from tests.factories import make_account
    from tests.web.test_admin_pages import sign_in

    context = build_context(
        make_settings(
            database_url, stripe_secret_key="sk_test_" + "e" * 24, stripe_api_base=standin.base_url
        ),
        signing_key=signing_key,
    )
    try:
        async with context.database.sessionmaker() as db:
            await make_account(db, email="env-ops@example.com")
            await operators.add_operator(db, "env-ops@example.com", added_by="cli:test")
            await db.commit()
        transport = httpx.ASGITransport(app=create_app(context=context))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            await sign_in(client, "env-ops@example.com")
            page = await client.get("/admin/setup")
            assert 'id="setting-stripe_secret_key">Set in the environment' in page.text
            assert 'name="stripe_secret_key"' not in page.text
            refused = await client.post(
                "/admin/setup/stripe", data={"csrf_token": csrf_of(page), "stripe_secret_key": SECRET}
            )
            # The environment's value is left alone; nothing else was sent.
            assert refused.status_code == 303
            assert context.settings.stripe_secret_key is not None
            assert context.settings.stripe_secret_key.get_secret_value() != SECRET
    finally:
        await context.aclose()
