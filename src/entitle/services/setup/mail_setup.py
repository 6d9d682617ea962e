"""The mail card: an SMTP URL, proven by sending a test mail to the operator who asks.

The test mail goes straight through `SmtpMailer`, not the outbox: the operator is waiting for the
answer, and what they need on failure is the server's own refusal (a 535 for a bad login, a refused
connection), which the worker's retries would hide. The sentence names the server by host and port only,
never the URL, which carries the password.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import urlsplit

import aiosmtplib
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.db.types import utcnow
from entitle.services.delivery.mail import SmtpMailer
from entitle.services.setup import settings_cards
from entitle.services.setup.cards import Card, CardState


@dataclass(frozen=True)
class MailCheck:
    ok: bool
    sentence: str
    checked_at: dt.datetime


def _server(mailer: SmtpMailer) -> str:
    return f"{mailer.hostname}:{mailer.port}"


def _refusal(exc: aiosmtplib.SMTPResponseException) -> str:
    return f"{exc.code} {exc.message.strip().rstrip('.')}"


def _message(context: AppContext, to: str) -> EmailMessage:
    settings = context.settings
    message = EmailMessage()
    message["From"] = settings.email_from
    message["To"] = to
    message["Subject"] = f"Test mail from {settings.app_name}"
    message["Message-ID"] = make_msgid(domain="entitle.local")
    message.set_content(
        f"Hello,\n\nThis is the test mail you sent from the set-up page of {settings.app_name}. "
        "It arrived, so mail works: sign-up confirmations, password resets and alerts will arrive too.\n"
    )
    return message


async def send_test_mail(context: AppContext, to: str, *, smtp_url: str | None = None) -> MailCheck:
    """Send a test mail to `to` through `smtp_url` (the configured one by default)."""
    now = utcnow()
    if smtp_url is None:
        configured = context.settings.smtp_url
        if configured is None:
            return MailCheck(False, "No SMTP URL is set: mails are written to the log.", now)
        smtp_url = configured.get_secret_value()
    if urlsplit(smtp_url).scheme not in ("smtp", "smtps"):
        return MailCheck(False, "The SMTP URL must look like smtp://user:pass@host:587.", now)
    mailer = SmtpMailer(smtp_url)
    server = _server(mailer)
    try:
        await mailer.send(_message(context, to))
    except aiosmtplib.SMTPAuthenticationError as exc:
        return MailCheck(False, f"The mail server at {server} refused the login: {_refusal(exc)}.", now)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        refused = exc.recipients[0] if exc.recipients else None
        reason = f": {_refusal(refused)}" if refused is not None else ""
        return MailCheck(False, f"The mail server at {server} refused the address {to}{reason}.", now)
    except aiosmtplib.SMTPResponseException as exc:
        return MailCheck(False, f"The mail server at {server} refused the mail: {_refusal(exc)}.", now)
    except (aiosmtplib.SMTPException, OSError) as exc:
        reason = str(exc).strip().rstrip(".") or type(exc).__name__
        return MailCheck(False, f"The mail server at {server} could not be reached: {reason}.", now)
    return MailCheck(True, f"A test mail to {to} was accepted by {server}.", now)


async def card(db: AsyncSession, context: AppContext, *, checked: MailCheck | None = None) -> Card:
    """The mail card; `checked` is a test mail just sent (the page passes it to show its answer)."""
    base = await settings_cards.mail(db, context)
    if base.state == "not_set" or checked is None:
        return base
    state: CardState = "verified" if checked.ok else "failing"
    return replace(base, state=state, sentence=checked.sentence, checked_at=checked.checked_at)
