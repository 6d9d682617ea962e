"""The Stripe card's actions over HTTP: a refused key shows Stripe's reason on the card and saves
nothing; connecting saves the keys and the endpoint's secret (names only in the audit trail)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.events import AccountEvent
from entitle.services.setup.runtime_settings import source_of
from tests.standins.stripe import StripeStandin
from tests.web.test_admin_pages import operator  # noqa: F401  (the signed-in operator fixture)
from tests.web.test_pages import post_form

WRONG = "sk_test_51NotAKeyStripeKnowsAbout1234"


@pytest.fixture
def standin() -> Iterator[StripeStandin]:
    with StripeStandin() as running:
        yield running


@pytest.fixture
def settings_overrides(standin: StripeStandin) -> dict[str, Any]:
    return {"stripe_api_base": standin.base_url}


def stripe_card(page: httpx.Response) -> str:
    found = re.search(r'<section[^>]*id="card-stripe".*?</section>', page.text, re.S)
    assert found is not None
    return found.group(0)


async def test_a_refused_key_shows_stripes_reason_and_saves_nothing(
    client: httpx.AsyncClient,
    context: AppContext,
    standin: StripeStandin,
    operator: str,  # noqa: F811
) -> None:
    refused = await post_form(
        client,
        "/admin/setup",
        "/admin/setup/stripe/connect",
        {"stripe_secret_key": WRONG, "stripe_publishable_key": "pk_test_abc"},
    )
    assert refused.status_code == 422
    reason = "Invalid API Key provided: sk_test_" + "*" * (len(WRONG) - 12) + "1234"
    assert f'<p class="error" role="alert" id="error-stripe">{reason}</p>' in stripe_card(refused)
    assert WRONG not in refused.text
    assert source_of(context, "stripe_secret_key") == "unset"
    assert standin.state.all("webhook_endpoint") == []


async def test_connecting_saves_the_keys_and_the_endpoints_secret(
    client: httpx.AsyncClient,
    context: AppContext,
    standin: StripeStandin,
    operator: str,  # noqa: F811
) -> None:
    connected = await post_form(
        client,
        "/admin/setup",
        "/admin/setup/stripe/connect",
        {"stripe_secret_key": standin.secret_key, "stripe_publishable_key": "pk_test_abc"},
    )
    assert connected.status_code == 303, connected.text
    [endpoint] = standin.state.all("webhook_endpoint")
    secret = endpoint["_hidden"]["secret"]
    assert [s.get_secret_value() for s in context.settings.stripe_webhook_secret] == [secret]
    assert source_of(context, "stripe_webhook_secret") == "saved"
    page = await client.get(connected.headers["location"])
    assert "Connected" in page.text and 'data-state="verified"' in stripe_card(page)
    assert secret not in page.text and standin.secret_key not in page.text
    async with context.database.sessionmaker() as db:
        events = (await db.scalars(select(AccountEvent))).all()
    saved = [e.data["saved"] for e in events if e.data.get("action") == "settings.saved"]
    assert saved == [["stripe_publishable_key", "stripe_secret_key"], ["stripe_webhook_secret"]]
    assert secret not in repr([e.data for e in events])

    # Again: the endpoint whose secret is saved is reused, nothing new to save.
    again = await post_form(client, "/admin/setup", "/admin/setup/stripe/connect", {})
    assert again.status_code == 303
    assert [e["id"] for e in standin.state.all("webhook_endpoint")] == [endpoint["id"]]
    assert [s.get_secret_value() for s in context.settings.stripe_webhook_secret] == [secret]


async def test_a_test_event_needs_keys(
    client: httpx.AsyncClient,
    operator: str,  # noqa: F811
) -> None:
    refused = await post_form(client, "/admin/setup", "/admin/setup/stripe/test-event", {})
    assert refused.status_code == 422 and "Save the Stripe keys first." in stripe_card(refused)
