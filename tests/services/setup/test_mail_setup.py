"""The mail card over the SMTP stand-in: a test mail to the operator, or the server's own refusal."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.services.setup import mail_setup
from tests.standins.smtp import SmtpSink

OPERATOR = "owner@example.com"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"app_name": "Acme"}


async def test_a_test_mail_reaches_the_operator(db: AsyncSession, context: AppContext) -> None:
    with SmtpSink(username="relay", password="s3cret-pass") as sink:
        checked = await mail_setup.send_test_mail(context, OPERATOR, smtp_url=sink.url)
        assert checked.ok, checked.sentence
        assert checked.sentence == f"A test mail to {OPERATOR} was accepted by 127.0.0.1:{sink.port}."
        [mail] = sink.to(OPERATOR)
    assert mail.subject == "Test mail from Acme"
    assert "mail works" in mail.text
    context.settings = context.settings.model_copy(update={"smtp_url": SecretStr(sink.url)})
    card = await mail_setup.card(db, context, checked=checked)
    assert card.state == "verified"


async def test_a_wrong_password_gives_the_servers_refusal(context: AppContext) -> None:
    with SmtpSink(username="relay", password="s3cret-pass") as sink:
        wrong = f"smtp://relay:not-it@127.0.0.1:{sink.port}"
        checked = await mail_setup.send_test_mail(context, OPERATOR, smtp_url=wrong)
        assert sink.messages == []
    assert not checked.ok
    assert checked.sentence.startswith(f"The mail server at 127.0.0.1:{sink.port} refused the login: 535 ")
    assert "not-it" not in checked.sentence


async def test_no_login_where_one_is_required_gives_the_servers_refusal(context: AppContext) -> None:
    with SmtpSink(username="relay", password="s3cret-pass") as sink:
        checked = await mail_setup.send_test_mail(context, OPERATOR, smtp_url=f"smtp://127.0.0.1:{sink.port}")
    assert not checked.ok
    assert checked.sentence.startswith(f"The mail server at 127.0.0.1:{sink.port} refused the mail: 530 ")


async def test_a_refused_connection_is_said_so(context: AppContext) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    checked = await mail_setup.send_test_mail(context, OPERATOR, smtp_url=f"smtp://u:pw@127.0.0.1:{port}")
    assert not checked.ok
    assert checked.sentence.startswith(f"The mail server at 127.0.0.1:{port} could not be reached: ")
    assert "u:pw" not in checked.sentence


async def test_a_temporary_refusal_is_the_servers_own_words(context: AppContext) -> None:
    with SmtpSink() as sink:
        sink.refuse = True
        checked = await mail_setup.send_test_mail(context, OPERATOR, smtp_url=sink.url)
    assert (
        checked.sentence
        == f"The mail server at 127.0.0.1:{sink.port} refused the mail: 451 4.3.0 try again later."
    )


async def test_the_card_is_not_set_without_an_smtp_url(db: AsyncSession, context: AppContext) -> None:
    assert context.settings.smtp_url is None
    card = await mail_setup.card(db, context)
    assert card.state == "not_set"
    checked = await mail_setup.send_test_mail(context, OPERATOR)
    assert (checked.ok, checked.sentence) == (False, "No SMTP URL is set: mails are written to the log.")
