"""Verification and recovery end to end: requests in, the worker mails through a real SMTP server on
loopback, and the links in those mails carry tokens the API accepts once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from entitle.context import AppContext
from entitle.core.models.accounts import AccountToken
from entitle.core.models.mail import OutboundMail
from entitle.db.types import utcnow
from entitle.services.delivery.account_work import deliver_account_work
from tests.factories import DEFAULT_PASSWORD, bearer, register
from tests.standins.smtp import SmtpSink

NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as running:
        yield running


@pytest.fixture
def settings_overrides(sink: SmtpSink, request: pytest.FixtureRequest) -> dict[str, Any]:
    overrides: dict[str, Any] = {
        "smtp_url": sink.url,
        "app_name": "Acme Notes",
        "email_from": "Acme Notes <hello@acme.example>",
    }
    return overrides | getattr(request, "param", {})


async def mails_to(context: AppContext, sink: SmtpSink, address: str, subject_has: str) -> list[Any]:
    """Run the worker's mail pass, then what reached `address` with that subject."""
    await deliver_account_work(context)
    return [mail for mail in sink.to(address) if subject_has in mail.subject]


async def test_registration_mails_a_link_that_verifies_once(
    client: httpx.AsyncClient, context: AppContext, sink: SmtpSink
) -> None:
    session = await register(client, "pat@example.com")
    assert session["account"]["email_verified"] is False
    [mail] = await mails_to(context, sink, "pat@example.com", "Confirm your email")
    assert mail.subject == "Confirm your email address for Acme Notes"
    assert mail.message["From"] == "Acme Notes <hello@acme.example>"
    link = mail.link("/account/verify-email")
    assert link.startswith("http://testserver/account/verify-email?token=")
    assert link.replace("&", "&amp;") in mail.html or link in mail.html
    token = mail.link_token("/account/verify-email")

    verified = await client.post("/v1/auth/email/verify", json={"token": token})
    assert verified.status_code == 200, verified.text
    assert verified.json()["account"]["email_verified"] is True
    again = await client.post("/v1/auth/email/verify", json={"token": token})
    assert (again.status_code, again.json()["error"]["code"]) == (400, "link_token_used")
    me = await client.get("/v1/me", headers=bearer(session))
    assert me.json()["email_verified"] is True
    # Sent mail keeps no token behind it.
    async with context.database.sessionmaker() as db:
        stored = (await db.scalars(select(OutboundMail.data))).all()
    assert stored and all("token" not in data for data in stored)


async def test_resend_gives_a_fresh_working_link(
    client: httpx.AsyncClient, context: AppContext, sink: SmtpSink
) -> None:
    session = await register(client, "pat@example.com")
    resent = await client.post("/v1/me/email/verification", headers=bearer(session))
    assert resent.status_code == 202
    mails = await mails_to(context, sink, "pat@example.com", "Confirm your email")
    assert len(mails) == 2
    verified = await client.post(
        "/v1/auth/email/verify", json={"token": mails[-1].link_token("/account/verify-email")}
    )
    assert verified.status_code == 200
    # Nothing left to verify: no third mail.
    assert (await client.post("/v1/me/email/verification", headers=bearer(session))).status_code == 202
    assert len(await mails_to(context, sink, "pat@example.com", "Confirm your email")) == 2


async def test_forgot_answers_the_same_whatever_the_address(
    client: httpx.AsyncClient, context: AppContext, sink: SmtpSink
) -> None:
    await register(client, "pat@example.com")
    known = await client.post("/v1/auth/password/forgot", json={"email": "PAT@example.com"})
    unknown = await client.post("/v1/auth/password/forgot", json={"email": "nobody@example.com"})
    assert (known.status_code, unknown.status_code) == (202, 202)
    assert known.json() == unknown.json()
    assert len(await mails_to(context, sink, "pat@example.com", "Reset your")) == 1
    assert sink.to("nobody@example.com") == []


async def test_reset_sets_the_password_once_and_ends_every_other_session(
    client: httpx.AsyncClient, context: AppContext, sink: SmtpSink
) -> None:
    first = await register(client, "pat@example.com")
    login = await client.post(
        "/v1/auth/login", json={"email": "pat@example.com", "password": DEFAULT_PASSWORD}
    )
    second = login.json()
    await client.post("/v1/auth/password/forgot", json={"email": "pat@example.com"})
    [mail] = await mails_to(context, sink, "pat@example.com", "Reset your Acme Notes password")
    token = mail.link_token("/account/reset-password")

    reset = await client.post("/v1/auth/password/reset", json={"token": token, "password": NEW_PASSWORD})
    assert reset.status_code == 200, reset.text
    assert reset.json()["account"]["email_verified"] is True  # opening the mail proved the address
    replay = await client.post(
        "/v1/auth/password/reset", json={"token": token, "password": "another one entirely"}
    )
    assert (replay.status_code, replay.json()["error"]["code"]) == (400, "link_token_used")

    for old in (first, second):
        assert (await client.get("/v1/me", headers=bearer(old))).status_code == 401
        refreshed = await client.post("/v1/auth/refresh", json={"refresh_token": old["refresh_token"]})
        assert refreshed.status_code == 401
    assert (await client.get("/v1/me", headers=bearer(reset.json()))).status_code == 200
    old_password = await client.post(
        "/v1/auth/login", json={"email": "pat@example.com", "password": DEFAULT_PASSWORD}
    )
    assert old_password.status_code == 401
    new_password = await client.post(
        "/v1/auth/login", json={"email": "pat@example.com", "password": NEW_PASSWORD}
    )
    assert new_password.status_code == 200
    [told] = await mails_to(context, sink, "pat@example.com", "was changed")
    assert "every other session was signed out" in told.text


async def test_a_reset_link_dies_after_an_hour(
    client: httpx.AsyncClient, context: AppContext, sink: SmtpSink
) -> None:
    await register(client, "pat@example.com")
    await client.post("/v1/auth/password/forgot", json={"email": "pat@example.com"})
    [mail] = await mails_to(context, sink, "pat@example.com", "Reset your")
    async with context.database.transaction() as db:
        await db.execute(update(AccountToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    late = await client.post(
        "/v1/auth/password/reset",
        json={"token": mail.link_token("/account/reset-password"), "password": NEW_PASSWORD},
    )
    assert (late.status_code, late.json()["error"]["code"]) == (400, "link_token_expired")
    made_up = await client.post(
        "/v1/auth/password/reset", json={"token": "not-a-token", "password": NEW_PASSWORD}
    )
    assert (made_up.status_code, made_up.json()["error"]["code"]) == (400, "invalid_link_token")


async def test_change_password_needs_the_current_one_and_keeps_this_session(
    client: httpx.AsyncClient, context: AppContext, sink: SmtpSink
) -> None:
    here = await register(client, "pat@example.com")
    elsewhere = (
        await client.post("/v1/auth/login", json={"email": "pat@example.com", "password": DEFAULT_PASSWORD})
    ).json()
    missing = await client.post("/v1/me/password", json={"password": NEW_PASSWORD}, headers=bearer(here))
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "current_password_required")
    wrong = await client.post(
        "/v1/me/password",
        json={"password": NEW_PASSWORD, "current_password": "not my password"},
        headers=bearer(here),
    )
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_credentials")
    changed = await client.post(
        "/v1/me/password",
        json={"password": NEW_PASSWORD, "current_password": DEFAULT_PASSWORD},
        headers=bearer(here),
    )
    assert changed.status_code == 204, changed.text
    assert (await client.get("/v1/me", headers=bearer(here))).status_code == 200
    assert (await client.get("/v1/me", headers=bearer(elsewhere))).status_code == 401
    login = await client.post("/v1/auth/login", json={"email": "pat@example.com", "password": NEW_PASSWORD})
    assert login.status_code == 200
    assert len(await mails_to(context, sink, "pat@example.com", "was changed")) == 1


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_mail_per_address": "2/hour"}], indirect=True)
async def test_mail_routes_are_limited_per_address(client: httpx.AsyncClient) -> None:
    await register(client, "pat@example.com")  # one mail
    assert (
        await client.post("/v1/auth/password/forgot", json={"email": "pat@example.com"})
    ).status_code == 202
    limited = await client.post("/v1/auth/password/forgot", json={"email": "pat@example.com"})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    other = await client.post("/v1/auth/password/forgot", json={"email": "someone@example.com"})
    assert other.status_code == 202


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_per_ip": "3/minute"}], indirect=True)
async def test_mail_routes_are_limited_per_ip(client: httpx.AsyncClient) -> None:
    answers = [
        (await client.post("/v1/auth/password/forgot", json={"email": f"p{n}@example.com"})).status_code
        for n in range(4)
    ]
    assert answers == [202, 202, 202, 429]


async def test_a_failing_smtp_server_is_retried_with_backoff(
    client: httpx.AsyncClient, context: AppContext, sink: SmtpSink
) -> None:
    sink.refuse = True
    await register(client, "pat@example.com")
    await deliver_account_work(context)
    async with context.database.sessionmaker() as db:
        [row] = (await db.scalars(select(OutboundMail))).all()
        assert (row.status, row.attempts) == ("pending", 1)
        assert row.next_attempt_at is not None and row.next_attempt_at > utcnow()
        assert row.last_error is not None and "token" not in row.last_error
    sink.refuse = False
    await deliver_account_work(context)  # not due yet
    assert sink.messages == []
    async with context.database.transaction() as db:
        await db.execute(update(OutboundMail).values(next_attempt_at=utcnow()))
    await deliver_account_work(context)
    assert len(sink.to("pat@example.com")) == 1
