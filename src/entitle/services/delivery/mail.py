"""Mail: templates, the outbox, and the senders the worker uses.

Handlers announce, senders send. A change that must tell someone (registration, a reset request, a new
password) calls `queue_mail` inside its own transaction: the mail is a row that commits or rolls back
with the change, and nothing talks to an SMTP server from inside a request. The worker
(`deliver_due_mail`) renders each due row with the current settings, sends it, and retries failures
with backoff; once sent, the row's values (which may hold a link's token) are erased.

Senders: `SmtpMailer` (`ENTITLE_SMTP_URL`, aiosmtplib; STARTTLS when the server offers it, TLS from the
start with smtps://) and, in development without SMTP, `LogMailer`, which writes each mail to the log
so a developer can follow the links. Production refuses to start without SMTP (settings.py).
"""

from __future__ import annotations

import html
import logging
import string
import uuid
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, Protocol
from urllib.parse import unquote, urlencode, urlsplit

import aiosmtplib
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.mail import MailStatus, OutboundMail
from entitle.db.claims import Claim, claim_leases, holding
from entitle.db.engine import Database
from entitle.db.types import utcnow
from entitle.email_addresses import InvalidEmailAddress, canonical_email
from entitle.settings import Settings

log = logging.getLogger(__name__)

FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
# About a day of retries with the backoff above; a reset link is stale long before that anyway.
MAX_ATTEMPTS = 30
CLAIM_LEASE = timedelta(minutes=2)
SMTP_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class Template:
    subject: str
    text: str
    # The paragraphs of the HTML body; each is escaped, `$link` becomes a button.
    html_paragraphs: tuple[str, ...]
    # The page the link opens, or None for a mail without a link.
    link_path: str | None = None


TEMPLATES: dict[str, Template] = {
    "verify_email": Template(
        subject="Confirm your email address for $app_name",
        text=(
            "Hello,\n\nPlease confirm that $email is your address for $app_name by opening this link:\n\n"
            "$link\n\nThe link works once and for 7 days. If you did not sign up for $app_name, ignore "
            "this mail.\n"
        ),
        html_paragraphs=(
            "Please confirm that $email is your address for $app_name.",
            "$link",
            "The link works once and for 7 days. If you did not sign up for $app_name, ignore this mail.",
        ),
        link_path="/account/verify-email",
    ),
    "reset_password": Template(
        subject="Reset your $app_name password",
        text=(
            "Hello,\n\nSomeone (we hope you) asked to reset the password of the $app_name account for "
            "$email. Choose a new password here:\n\n$link\n\nThe link works once and for one hour. If you "
            "did not ask, ignore this mail: your password stays as it is.\n"
        ),
        html_paragraphs=(
            "Someone (we hope you) asked to reset the password of the $app_name account for $email.",
            "$link",
            "The link works once and for one hour. If you did not ask, ignore this mail: your password "
            "stays as it is.",
        ),
        link_path="/account/reset-password",
    ),
    "password_changed": Template(
        subject="Your $app_name password was changed",
        text=(
            "Hello,\n\nThe password of your $app_name account ($email) was just changed, and every other "
            'session was signed out. If this was not you, reset your password at once with "Forgot '
            'password" and contact support.\n'
        ),
        html_paragraphs=(
            "The password of your $app_name account ($email) was just changed, and every other session "
            "was signed out.",
            'If this was not you, reset your password at once with "Forgot password" and contact support.',
        ),
    ),
    "account_secured": Template(
        subject="You signed in to $app_name with $provider",
        text=(
            "Hello,\n\nYou signed in to $app_name with $provider, which confirmed $email. An account had "
            "been registered with this address but never confirmed, so to keep it yours we removed its "
            "password and any other way in that had not proven the address, and signed out its other "
            "sessions. Everything the account holds is still there. You can add a new password in the "
            "app's account settings.\n"
        ),
        html_paragraphs=(
            "You signed in to $app_name with $provider, which confirmed $email.",
            "An account had been registered with this address but never confirmed, so to keep it yours "
            "we removed its password and any other way in that had not proven the address, and signed "
            "out its other sessions. Everything the account holds is still there.",
            "You can add a new password in the app's account settings.",
        ),
    ),
    "trial_ending_add_card": Template(
        subject="Your $app_name trial ends on $trial_end",
        text=(
            "Hello,\n\nYour free trial of $product ends on $trial_end. No card is on file, so it will "
            "simply stop then, and you will not be charged. To keep $product, add a card here (you will "
            "be asked to sign in first):\n\n$link\n\nThe first payment is taken when the trial ends.\n"
        ),
        html_paragraphs=(
            "Your free trial of $product ends on $trial_end. No card is on file, so it will simply stop "
            "then, and you will not be charged.",
            "To keep $product, add a card (you will be asked to sign in first):",
            "$link",
            "The first payment is taken when the trial ends.",
        ),
        # No token: the page asks the person to sign in, so a forwarded mail opens nobody's billing.
        link_path="/account/payment-method",
    ),
    # Pay first, the account after (services/billing/guest_checkout.py): the link proves the address.
    "guest_paid": Template(
        subject="Your $product is waiting: add it to your $app_name account",
        text=(
            "Hello,\n\nThank you for buying $product. It is paid and waiting for an account. Open this "
            "link to create your account (or sign in) and add it; on an iPhone it opens the app:\n\n"
            "$link\n\nThe link works once and for 7 days. If you already finished in the browser you paid "
            "in, there is nothing more to do.\n"
        ),
        html_paragraphs=(
            "Thank you for buying $product. It is paid and waiting for an account.",
            "Open this link to create your account (or sign in) and add it; on an iPhone it opens the app.",
            "$link",
            "The link works once and for 7 days. If you already finished in the browser you paid in, there "
            "is nothing more to do.",
        ),
        link_path="/redeem",
    ),
    "guest_paid_existing": Template(
        subject="Your $product is waiting: sign in to $app_name to add it",
        text=(
            "Hello,\n\nThank you for buying $product. There is already a $app_name account for $email, so "
            "open this link and sign in to that account to add it:\n\n$link\n\nThe link works once and "
            "for 7 days. If you already added it in the browser you paid in, there is nothing more to do.\n"
        ),
        html_paragraphs=(
            "Thank you for buying $product.",
            "There is already a $app_name account for $email, so open this link and sign in to that "
            "account to add it.",
            "$link",
            "The link works once and for 7 days. If you already added it in the browser you paid in, there "
            "is nothing more to do.",
        ),
        link_path="/redeem",
    ),
    "guest_claimed": Template(
        subject="$product is now in your $app_name account",
        text=(
            "Hello,\n\n$product, which you paid for at checkout, is now in the $app_name account "
            "$account_email. It works on the web and in the app once you sign in with that account. The "
            "link we mailed you before no longer works: it is not needed any more.\n"
        ),
        html_paragraphs=(
            "$product, which you paid for at checkout, is now in the $app_name account $account_email.",
            "It works on the web and in the app once you sign in with that account. The link we mailed you "
            "before no longer works: it is not needed any more.",
        ),
    ),
    # Operator alerts (services/delivery/alerts.py): to every operator, as well as the alert URL.
    "operator_alert": Template(
        subject="$app_name needs attention: $headline",
        text=(
            "Hello,\n\n$text\n\nThe dashboard shows the details:\n\n$link\n\nThe same cause alerts at most "
            "once an hour; you get this because you are an operator of $app_name.\n"
        ),
        html_paragraphs=(
            "$text",
            "The dashboard shows the details:",
            "$link",
            "The same cause alerts at most once an hour; you get this because you are an operator of "
            "$app_name.",
        ),
        link_path="/admin",
    ),
}


class UnbuildableMail(ValueError):
    """A mail that no retry could ever build (its recipient is not a valid address)."""


def render(template_name: str, data: dict[str, Any], settings: Settings) -> EmailMessage:
    """The mail for one outbox row, as plain text and HTML, with the app's name."""
    template = TEMPLATES[template_name]
    try:
        # One recipient, valid as a typed address: never a list that mails strangers, nor a header break.
        canonical_email(str(data["to"]))
    except InvalidEmailAddress as exc:
        raise UnbuildableMail(f"the recipient is not a valid address: {exc}") from None
    values = {key: str(value) for key, value in data.items() if key != "token"}
    values["app_name"] = settings.app_name
    values["link"] = ""
    if template.link_path is not None:
        query = f"?{urlencode({'token': data['token']})}" if "token" in data else ""
        values["link"] = f"{settings.public_url}{template.link_path}{query}"
    message = EmailMessage()
    message["Subject"] = string.Template(template.subject).safe_substitute(values)
    message["From"] = settings.email_from
    message["To"] = str(data["to"])
    message["Message-ID"] = make_msgid(domain=_domain(settings.email_from))
    message.set_content(string.Template(template.text).safe_substitute(values))
    message.add_alternative(_html(template, values), subtype="html")
    return message


def _html(template: Template, values: dict[str, str]) -> str:
    paragraphs = []
    for paragraph in template.html_paragraphs:
        if paragraph == "$link":
            link = html.escape(values["link"], quote=True)
            paragraphs.append(
                f'<p><a href="{link}" style="display:inline-block;padding:10px 18px;background:#111;'
                f'color:#fff;border-radius:6px;text-decoration:none">Open</a></p>'
                f'<p style="font-size:13px;color:#555">Or paste this address into a browser: {link}</p>'
            )
            continue
        escaped = {key: html.escape(value) for key, value in values.items()}
        paragraphs.append(f"<p>{string.Template(html.escape(paragraph)).safe_substitute(escaped)}</p>")
    title = html.escape(values["app_name"])
    return (
        '<!doctype html><html><body style="font-family:-apple-system,Segoe UI,sans-serif;line-height:1.5">'
        f"<h2>{title}</h2>{''.join(paragraphs)}</body></html>"
    )


def _domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].strip(" >") or "localhost"


async def queue_mail(
    db: AsyncSession,
    *,
    to: str,
    template: str,
    account_id: uuid.UUID | None = None,
    data: dict[str, Any] | None = None,
) -> OutboundMail:
    """Write a mail to the outbox in the caller's transaction; the worker sends it after the commit."""
    if template not in TEMPLATES:
        raise ValueError(f"no mail template named {template!r}")
    mail = OutboundMail(
        account_id=account_id,
        to=to,
        template=template,
        data={**(data or {}), "to": to},
        status=MailStatus.PENDING,
        next_attempt_at=utcnow(),
    )
    db.add(mail)
    await db.flush()
    return mail


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


class SmtpMailer:
    """Sends through an SMTP server given as smtp://user:pass@host:port or smtps://..."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.hostname = parts.hostname or "localhost"
        self.use_tls = parts.scheme == "smtps"
        self.port = parts.port or (465 if self.use_tls else 587)
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None

    async def send(self, message: EmailMessage) -> None:
        # start_tls=None: upgrade with STARTTLS whenever the server offers it.
        await aiosmtplib.send(
            message,
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.use_tls,
            start_tls=None if not self.use_tls else False,
            timeout=SMTP_TIMEOUT_SECONDS,
        )


class LogMailer:
    """Development without SMTP: each mail goes to the log, links included, so they can be followed."""

    async def send(self, message: EmailMessage) -> None:
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        # Tokens in this line are deliberate: it is the only way a developer without SMTP gets the link.
        # Production never uses this sender (ENTITLE_SMTP_URL is required there).
        log.info("mail to %s: %s\n%s", message["To"], message["Subject"], text)


def build_mailer(settings: Settings) -> Mailer:
    if settings.smtp_url is not None:
        return SmtpMailer(settings.smtp_url.get_secret_value())
    return LogMailer()


async def deliver_due_mail(
    database: Database,
    mailer: Mailer,
    settings: Settings,
    *,
    limit: int = 50,
    lease: timedelta = CLAIM_LEASE,
) -> int:
    """Send the outbox rows whose time has come; returns how many were claimed."""
    now = utcnow()
    async with database.transaction() as db:
        # Claimed with a lease, so a second worker (even on SQLite) never sends the same mail at once.
        claimed = await claim_leases(
            db,
            OutboundMail,
            (OutboundMail.status == MailStatus.PENDING) & (OutboundMail.next_attempt_at <= now),
            order_by=OutboundMail.created_at,
            limit=limit,
            lease=lease,
        )
    for claim in claimed:
        await _deliver(database, mailer, settings, claim, lease)
    return len(claimed)


async def _deliver(
    database: Database, mailer: Mailer, settings: Settings, claim: Claim, lease: timedelta
) -> None:
    async with database.transaction() as db:
        mail = await db.get(OutboundMail, claim.id)
        if mail is None or mail.status != MailStatus.PENDING:
            return
        permanent = False
        try:
            message: EmailMessage | None = render(mail.template, mail.data, settings)
            error: str | None = None
        except UnbuildableMail as exc:
            # Retrying cannot help: it fails now, with the reason on the row.
            message, error, permanent = None, str(exc)[:500], True
        except Exception as exc:  # a row that cannot be rendered must not block the ones behind it
            log.exception("mail %s could not be rendered", mail.id)
            message, error = None, f"{exc.__class__.__name__}"
    if message is not None:
        # The batch's lease may have run out while the mails before this one went (a slow relay): sent
        # only if no other worker took the mail since. No transaction is held while the relay takes its time.
        async with holding(database, OutboundMail, claim, lease) as still_ours:
            if not still_ours:
                return
            error = await _send(mailer, message, claim.id)
    async with database.transaction() as db:
        mail = await db.get(OutboundMail, claim.id)
        if mail is None:
            return
        mail.attempts += 1
        if error is None:
            mail.status = MailStatus.SENT
            mail.sent_at = utcnow()
            mail.last_error = None
            mail.data = {"to": mail.to}  # the token, if any, lived only until the mail was sent
            return
        log.warning("mail %s failed (attempt %d): %s", mail.id, mail.attempts, error)
        mail.last_error = error
        mail.status = MailStatus.FAILED if permanent or mail.attempts >= MAX_ATTEMPTS else MailStatus.PENDING
        mail.next_attempt_at = utcnow() + _backoff(mail.attempts)


async def _send(mailer: Mailer, message: EmailMessage, mail_id: uuid.UUID) -> str | None:
    """The error, or None once the relay took the mail."""
    try:
        await mailer.send(message)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        # Never the message itself: it may carry a token. The class and the server's words suffice.
        return f"{exc.__class__.__name__}: {exc}"[:500]
    except Exception as exc:
        log.exception("mail %s could not be sent", mail_id)
        return f"{exc.__class__.__name__}"
    return None


def _backoff(attempts: int) -> timedelta:
    delay: timedelta = FIRST_RETRY * (2 ** min(attempts - 1, 20))
    return min(delay, MAX_RETRY)
