"""The App Store card takes the In-App Purchase key pasted (the .p8 file's text), proves it with Apple's
API stand-in, and never shows it again: not in the page, an API answer, a log line or the audit trail."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.events import AccountEvent
from entitle.core.models.setup import SavedSetting
from tests.standins.appstore import fixtures as appstore_fixtures
from tests.standins.appstore.fixtures import StandIn, appstore_settings
from tests.web.test_admin_pages import operator  # noqa: F401  (the signed-in operator fixture)
from tests.web.test_pages import post_form

appstore_chain = appstore_fixtures.appstore_chain
appstore_root_path = appstore_fixtures.appstore_root_path
appstore_signer = appstore_fixtures.appstore_signer
appstore_api = appstore_fixtures.appstore_api


@pytest.fixture
def settings_overrides(appstore_api: StandIn, appstore_root_path: Path) -> dict[str, Any]:
    # The bundle id and the API's address only: the key is pasted on the page.
    return appstore_settings(appstore_root_path, apple_api_base=appstore_api.url)


def _card(page: httpx.Response, key: str) -> str:
    found = re.search(rf'<section[^>]*id="card-{key}".*?</section>', page.text, re.S)
    assert found is not None, page.text
    return found.group(0)


def _app_store_api(context: AppContext) -> object:
    """The App Store Server API client the running server uses (refresh, sync), rebuilt on a save."""
    return getattr(context.providers["app_store"], "api", None)


def _key_lines(pem: str) -> list[str]:
    """The key's base64 lines: any one of them seen anywhere would be a leak."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


async def test_a_pasted_key_is_saved_checked_with_apple_and_never_shown_again(
    client: httpx.AsyncClient,
    context: AppContext,
    appstore_api: StandIn,
    caplog: pytest.LogCaptureFixture,
    operator: str,  # noqa: F811
) -> None:
    caplog.set_level(logging.DEBUG)
    pem = appstore_api.key_path.read_text()
    page = await client.get("/admin/setup")
    card = _card(page, "app_store")
    assert '<textarea id="setting-apple_private_key" name="apple_private_key"' in card
    assert "apple_private_key_path" not in card

    # Pasted from a browser's textarea: CRLF line ends.
    saved = await post_form(
        client,
        "/admin/setup",
        "/admin/setup/app_store",
        {
            "apple_issuer_id": appstore_api.state.issuer_id,
            "apple_key_id": appstore_api.state.key_id,
            "apple_private_key": pem.replace("\n", "\r\n"),
        },
    )
    assert saved.status_code == 303, saved.text
    assert context.settings.apple_private_key is not None
    assert _app_store_api(context) is not None

    page = await client.get("/admin/setup?notice=saved")
    card = _card(page, "app_store")
    assert "Saved; paste a new one to replace it" in card
    assert 'name="clear-apple_private_key"' in card

    checked = await post_form(client, "/admin/setup", "/admin/setup/app_store/check", {})
    assert checked.status_code == 200, checked.text
    proven = _card(checked, "app_store")
    assert 'data-state="verified"' in proven
    assert "Apple accepted the key" in proven
    assert ("GET", "/inApps/v2/history/2000000000000000") in appstore_api.state.requests

    status = await client.get("/v1/status")
    async with context.database.sessionmaker() as db:
        events = (await db.scalars(select(AccountEvent))).all()
        stored = await db.get(SavedSetting, "apple_private_key")
    audit = [event.data for event in events if event.data.get("action") == "settings.saved"]
    assert audit and "apple_private_key" in audit[0]["saved"]
    # Encrypted at rest, and nowhere in what a person or a log can read.
    assert stored is not None and "PRIVATE KEY" not in stored.value
    texts = (page.text, checked.text, status.text, caplog.text, repr([event.data for event in events]))
    for line in _key_lines(pem):
        for text in (*texts, stored.value):
            assert line not in text
    assert "ENTITLE_" not in page.text and "ENTITLE_" not in checked.text


async def test_text_that_is_no_key_is_refused_on_its_card(
    client: httpx.AsyncClient,
    context: AppContext,
    appstore_api: StandIn,
    operator: str,  # noqa: F811
) -> None:
    refused = await post_form(
        client,
        "/admin/setup",
        "/admin/setup/app_store",
        {
            "apple_issuer_id": appstore_api.state.issuer_id,
            "apple_key_id": appstore_api.state.key_id,
            "apple_private_key": "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----",
        },
    )
    assert refused.status_code == 422
    card = _card(refused, "app_store")
    assert "Apple private key cannot be used" in card
    assert "paste the whole file" in card
    assert "bm90IGEga2V5" not in refused.text and "ENTITLE_" not in refused.text
    assert context.settings.apple_private_key is None


async def test_a_saved_key_can_be_removed(
    client: httpx.AsyncClient,
    context: AppContext,
    appstore_api: StandIn,
    operator: str,  # noqa: F811
) -> None:
    values = {
        "apple_issuer_id": appstore_api.state.issuer_id,
        "apple_key_id": appstore_api.state.key_id,
        "apple_private_key": appstore_api.key_path.read_text(),
    }
    assert (await post_form(client, "/admin/setup", "/admin/setup/app_store", values)).status_code == 303
    cleared = await post_form(
        client, "/admin/setup", "/admin/setup/app_store", {"clear-apple_private_key": "1"}
    )
    assert cleared.status_code == 303
    assert context.settings.apple_private_key is None
    assert _app_store_api(context) is None
    checked = await post_form(client, "/admin/setup", "/admin/setup/app_store/check", {})
    assert "Save the In-App Purchase key" in _card(checked, "app_store")
