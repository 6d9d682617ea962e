"""/admin/setup's buttons for the App Store, sign-in and mail cards, over HTTP and the stand-ins."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from entitle.context import AppContext
from tests.conftest import LiveServer
from tests.standins.appstore import fixtures as appstore_fixtures
from tests.standins.appstore.fixtures import StandIn
from tests.standins.jwks_server import APPLE_BUNDLE_ID, GOOGLE_IOS_CLIENT_ID, JwksStandin
from tests.standins.smtp import SmtpSink
from tests.web.test_admin_pages import operator  # noqa: F401  (the signed-in operator fixture)
from tests.web.test_pages import post_form

appstore_chain = appstore_fixtures.appstore_chain
appstore_root_path = appstore_fixtures.appstore_root_path
appstore_signer = appstore_fixtures.appstore_signer
appstore_api = appstore_fixtures.appstore_api


@pytest.fixture
def idp() -> Iterator[JwksStandin]:
    with JwksStandin(keys=2) as standin:
        yield standin


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink(username="relay", password="s3cret-relay") as standin:
        yield standin


@pytest.fixture
def settings_overrides(
    appstore_api: StandIn, appstore_root_path: Path, idp: JwksStandin, sink: SmtpSink
) -> dict[str, Any]:
    return appstore_api.settings(
        appstore_root_path,
        apple_signin_client_ids=[APPLE_BUNDLE_ID],
        apple_signin_jwks_url=idp.url,
        google_client_ids=[GOOGLE_IOS_CLIENT_ID],
        google_jwks_url=idp.url,
        smtp_url=sink.url,
    )


def _card(page: httpx.Response, key: str) -> str:
    found = re.search(rf'<section[^>]*id="card-{key}".*?</section>', page.text, re.S)
    assert found is not None, page.text
    return found.group(0)


async def _press(client: httpx.AsyncClient, action: str) -> httpx.Response:
    answer = await post_form(client, "/admin/setup", f"/admin/setup/{action}", {})
    assert answer.status_code == 200, answer.text
    assert "ENTITLE_" not in answer.text
    return answer


async def test_the_app_store_key_is_checked_with_apple(
    client: httpx.AsyncClient,
    operator: str,  # noqa: F811
) -> None:
    page = await client.get("/admin/setup")
    assert 'id="action-app_store-check"' in _card(page, "app_store")
    card = _card(await _press(client, "app_store/check"), "app_store")
    assert 'data-state="verified"' in card
    assert (
        "Apple accepted the key: asked for a made-up transaction, it answered HTTP 404, error 4040010" in card
    )


async def test_a_key_apple_refuses_shows_its_401(
    client: httpx.AsyncClient,
    context: AppContext,
    operator: str,  # noqa: F811
) -> None:
    context.settings = context.settings.model_copy(update={"apple_key_id": "ZZZZZZZZZZ"})
    card = _card(await _press(client, "app_store/check"), "app_store")
    assert 'data-state="failing"' in card
    assert "Apple refused the key (HTTP 401 Unauthorized)" in card


async def test_a_test_notification_arrives_and_the_card_says_when(
    client: httpx.AsyncClient,
    appstore_api: StandIn,
    live_server: LiveServer,
    operator: str,  # noqa: F811
) -> None:
    appstore_api.state.notification_url = f"{live_server.url}/webhooks/appstore"
    page = await _press(client, "app_store/test-notification")
    assert "Apple sent the test notification and this server accepted it." in page.text
    card = _card(page, "app_store")
    assert 'data-state="verified"' in card and "Last test notification received" in card
    # It lasts: the next visit reads it from the inbox.
    assert "Last test notification received" in _card(await client.get("/admin/setup"), "app_store")


@pytest.mark.parametrize(("key", "name"), [("apple_signin", "Apple"), ("google_signin", "Google")])
async def test_the_sign_in_keys_are_fetched(
    client: httpx.AsyncClient,
    key: str,
    name: str,
    operator: str,  # noqa: F811
) -> None:
    card = _card(await _press(client, f"{key}/check"), key)
    assert 'data-state="verified"' in card and f"{name}&#39;s keys fetched: 2 signing keys." in card


async def test_a_failing_key_endpoint_shows_its_answer(
    client: httpx.AsyncClient,
    idp: JwksStandin,
    operator: str,  # noqa: F811
) -> None:
    idp.status = 500
    card = _card(await _press(client, "google_signin/check"), "google_signin")
    assert 'data-state="failing"' in card and "key endpoint answered 500" in card


async def test_a_test_mail_goes_to_the_operator(
    client: httpx.AsyncClient,
    sink: SmtpSink,
    operator: str,  # noqa: F811
) -> None:
    page = await _press(client, "mail/test")
    card = _card(page, "mail")
    assert 'data-state="verified"' in card and f"A test mail to {operator} was accepted" in card
    [mail] = sink.to(operator)
    assert mail.subject.startswith("Test mail from ")
    assert "s3cret-relay" not in page.text


async def test_a_refused_login_shows_the_servers_words(
    client: httpx.AsyncClient,
    context: AppContext,
    sink: SmtpSink,
    operator: str,  # noqa: F811
) -> None:
    from pydantic import SecretStr

    wrong = SecretStr(f"smtp://relay:wrong-one@127.0.0.1:{sink.port}")
    context.settings = context.settings.model_copy(update={"smtp_url": wrong})
    card = _card(await _press(client, "mail/test"), "mail")
    assert 'data-state="failing"' in card and "refused the login: 535" in card
    assert "wrong-one" not in card and sink.messages == []


async def test_the_buttons_are_for_operators_only(client: httpx.AsyncClient) -> None:
    form = await client.get("/account/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    answer = await client.post("/admin/setup/mail/test", data={"csrf_token": token.group(1)})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/account/sign-in")
