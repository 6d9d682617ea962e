"""/admin/setup, the alerts' share over HTTP: the checklist, backups confirmed, the cards' test buttons."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from entitle.context import AppContext
from entitle.core.models.events import AccountEvent
from entitle.services.identity import operators
from tests.factories import make_account
from tests.services.test_outbound import Receiver
from tests.web.test_admin_pages import sign_in
from tests.web.test_pages import csrf_of


@pytest.fixture
def chat() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def settings_overrides(chat: Receiver) -> dict[str, Any]:
    return {"alert_webhook_url": chat.url}


@pytest.fixture
async def operator(client: httpx.AsyncClient, context: AppContext) -> str:
    async with context.database.sessionmaker() as db:
        await make_account(db, email="ops@example.com")
        await operators.add_operator(db, "ops@example.com", added_by="cli:test")
        await db.commit()
    await sign_in(client, "ops@example.com")
    return "ops@example.com"


async def test_only_operators_see_the_checklist(client: httpx.AsyncClient, context: AppContext) -> None:
    away = await client.get("/admin/setup/checklist")
    assert away.status_code == 303 and away.headers["location"].startswith("/account/sign-in")
    async with context.database.sessionmaker() as db:
        await make_account(db, email="pat@example.com")
    await sign_in(client, "pat@example.com")
    assert (await client.get("/admin/setup/checklist")).status_code == 403


async def test_the_checklist_shows_each_item_and_backups_are_confirmed_on_the_page(
    client: httpx.AsyncClient, context: AppContext, operator: str
) -> None:
    page = await client.get("/admin/setup/checklist")
    assert page.status_code == 200
    assert 'id="check-operators"' in page.text and "Only one operator can reach the dashboard" in page.text
    assert "docs/deploy.md#at-least-two-operators" in page.text
    assert "ENTITLE_" not in page.text
    saved = await client.post(
        "/admin/setup/backups", data={"csrf_token": csrf_of(page), "backups_configured": "true"}
    )
    assert (
        saved.status_code == 303
        and saved.headers["location"] == "/admin/setup?notice=backups_saved#checklist"
    )
    assert context.settings.backups_configured is True
    page = await client.get(saved.headers["location"])
    assert "Backups are confirmed as configured." in page.text and "Saved; every server process" in page.text
    async with context.database.sessionmaker() as db:
        logged = await db.scalars(select(AccountEvent).where(AccountEvent.type == operators.OPERATOR_ACTION))
        [event] = [event for event in logged if event.data["action"] == "settings.saved"]
    assert event.data["saved"] == ["backups_configured"] and event.data["by"] == operator


@pytest.mark.parametrize("settings_overrides", [{"backups_configured": True}])
async def test_backups_set_in_the_environment_offer_no_edit(client: httpx.AsyncClient, operator: str) -> None:
    page = await client.get("/admin/setup/checklist")
    assert 'id="backups-pinned"' in page.text and 'id="backups-form"' not in page.text
    token = csrf_of(await client.get("/account"))  # the visit's token, from a page that has a form
    refused = await client.post("/admin/setup/backups", data={"csrf_token": token})
    assert refused.status_code == 409 and "set in the environment" in refused.text


async def test_the_alerts_button_sends_a_test_and_the_card_says_what_came_back(
    client: httpx.AsyncClient, operator: str, chat: Receiver
) -> None:
    page = await client.get("/admin/setup")
    # Nothing to test without an endpoint: no button.
    assert 'id="test-alerts"' in page.text and 'id="test-webhooks"' not in page.text
    assert 'id="checklist"' in page.text and 'id="check-public_url_https"' in page.text
    assert 'id="setting-team_channel_url"' in page.text and chat.url not in page.text
    chat.answers = [403]
    chat.words = "invalid_token"
    tested = await client.post("/admin/setup/alerts/test", data={"csrf_token": csrf_of(page)})
    assert tested.status_code == 200 and len(chat.received) == 1
    assert 'id="error-alerts"' in tested.text
    assert "The chat webhook refused the test message: it answered 403 (invalid_token)." in tested.text
    assert 'data-state="failing"' in tested.text
    chat.answers, chat.words = [], ""
    tested = await client.post("/admin/setup/alerts/test", data={"csrf_token": csrf_of(page)})
    assert tested.headers["location"] == "/admin/setup?notice=alerts_tested#card-alerts"
    page = await client.get(tested.headers["location"])
    assert "The chat webhook accepted the test message." in page.text and "Test messages sent" in page.text
    assert 'data-state="verified"' in page.text


async def test_the_team_channel_is_saved_on_the_alerts_card(
    client: httpx.AsyncClient, context: AppContext, operator: str, chat: Receiver
) -> None:
    page = await client.get("/admin/setup")
    saved = await client.post(
        "/admin/setup/alerts",
        data={
            "csrf_token": csrf_of(page),
            "team_channel_url": "https://hooks.slack.com/services/T0/B0/secretpart",
            "team_channel_events": "refund, billing_problem",
        },
    )
    assert saved.status_code == 303, saved.text
    assert context.settings.team_channel_events == ["refund", "billing_problem"]
    page = await client.get("/admin/setup")
    assert "secretpart" not in page.text
    assert "the team channel hears of refunds, billing problems" in page.text
    wrong = await client.post(
        "/admin/setup/alerts", data={"csrf_token": csrf_of(page), "team_channel_events": "refunds"}
    )
    assert wrong.status_code == 422 and "is not one of new_subscriber" in wrong.text


async def test_the_buttons_need_the_pages_csrf_token(client: httpx.AsyncClient, operator: str) -> None:
    for action in ("/admin/setup/alerts/test", "/admin/setup/webhooks/test", "/admin/setup/backups"):
        assert (await client.post(action, data={"csrf_token": "forged"})).status_code == 403
