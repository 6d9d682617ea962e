"""Mail templates, senders and the settings that govern them."""

from __future__ import annotations

import logging

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError
from sqlalchemy import func, select

from entitle.context import AppContext
from entitle.core.models.mail import MailStatus, OutboundMail
from entitle.services.delivery.mail import LogMailer, SmtpMailer, deliver_due_mail, queue_mail, render
from entitle.settings import Settings
from tests.factories import SHORT_LEASE, run_two_workers
from tests.standins.smtp import SmtpSink

PRODUCTION = {
    "environment": "production",
    "admin_api_key": "a-real-admin-key-0123456789",
    "jwt_private_key_path": "/etc/entitle/key.pem",
    "encryption_key": Fernet.generate_key().decode(),
}


def test_production_refuses_to_start_without_smtp() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**PRODUCTION)
    assert "ENTITLE_SMTP_URL must be set: password sign-in needs mail" in str(refused.value)
    assert Settings(**PRODUCTION, smtp_url="smtps://user:pass@mail.example.com:465").smtp_url is not None


def test_production_needs_an_encryption_key() -> None:
    values = PRODUCTION | {"smtp_url": "smtp://mail.example.com", "encryption_key": None}
    with pytest.raises(ValidationError, match="ENTITLE_ENCRYPTION_KEY"):
        Settings(**values)


def test_smtp_urls_are_read_as_documented() -> None:
    starttls = SmtpMailer("smtp://apikey:s%40cret@smtp.example.com")
    assert (starttls.hostname, starttls.port, starttls.use_tls) == ("smtp.example.com", 587, False)
    assert (starttls.username, starttls.password) == ("apikey", "s@cret")
    implicit = SmtpMailer("smtps://smtp.example.com")
    assert (implicit.port, implicit.use_tls, implicit.username) == (465, True, None)
    with pytest.raises(ValidationError):
        Settings(smtp_url="http://smtp.example.com")


def test_templates_carry_the_app_name_and_escape_what_they_are_given() -> None:
    settings = Settings(app_name="Notes & Co", public_url="https://notes.example.com")
    message = render(
        "verify_email", {"to": "pat@example.com", "email": "<pat>@example.com", "token": "t0k"}, settings
    )
    assert message["Subject"] == "Confirm your email address for Notes & Co"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert "https://notes.example.com/account/verify-email?token=t0k" in text.get_content()
    assert "Notes &amp; Co" in html.get_content() and "&lt;pat&gt;" in html.get_content()
    assert "<pat>" not in html.get_content()


async def test_development_without_smtp_writes_mails_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    message = render(
        "reset_password", {"to": "pat@example.com", "email": "pat@example.com", "token": "x"}, Settings()
    )
    with caplog.at_level(logging.INFO, logger="entitle.services.delivery.mail"):
        await LogMailer().send(message)
    assert "mail to pat@example.com: Reset your entitle password" in caplog.text
    assert "/account/reset-password?token=x" in caplog.text


async def test_a_mail_to_an_invalid_address_fails_at_once_with_the_reason(context: AppContext) -> None:
    async with context.database.transaction() as db:
        bad = await queue_mail(db, to="a@example.com, b@example.com", template="password_changed", data={})
        good = await queue_mail(db, to="pat@example.com", template="password_changed", data={})
    assert await deliver_due_mail(context.database, LogMailer(), context.settings) == 2
    async with context.database.sessionmaker() as db:
        failed = await db.get(OutboundMail, bad.id)
        sent = await db.get(OutboundMail, good.id)
    assert sent is not None and sent.status == MailStatus.SENT
    assert failed is not None and failed.status == MailStatus.FAILED and failed.attempts == 1
    assert failed.last_error is not None and "not a valid address" in failed.last_error


async def test_two_workers_and_a_slow_relay_send_each_mail_once(context: AppContext) -> None:
    recipients = [f"person{n}@example.com" for n in range(20)]
    async with context.database.transaction() as db:
        for to in recipients:
            await queue_mail(db, to=to, template="password_changed", data={"email": to})

    async def pending() -> int:
        async with context.database.sessionmaker() as db:
            query = select(func.count()).where(OutboundMail.status == MailStatus.PENDING)
            return int(await db.scalar(query) or 0)

    with SmtpSink() as relay:
        relay.delay = 0.1
        mailer = SmtpMailer(relay.url)
        await run_two_workers(
            lambda: deliver_due_mail(context.database, mailer, context.settings, lease=SHORT_LEASE), pending
        )
    assert sorted(to for mail in relay.messages for to in mail.recipients) == sorted(recipients)
