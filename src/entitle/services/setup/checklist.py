"""The production-ready checklist: what a real install needs, each item ok or not, with how to fix it.

Read from the effective settings and the database alone, so `/admin/setup` and `entitle doctor` say the
same thing and neither reaches a vendor. Each item's `docs` names the section of the documentation that
fixes it (docs/deploy.md#production-checklist and the sections below it). A sentence never quotes a
secret nor a setting's name: the page is read by operators, who fix things on the page or in the docs.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.fernet import Fernet
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.accounts import Operator
from entitle.settings import RunEnvironment, Settings, is_placeholder_secret

DOCS = "docs/deploy.md"
# Stripe's live keys; any other (sk_test_, rk_test_, pk_test_) moves only test money.
_LIVE_SECRET_PREFIXES = ("sk_live_", "rk_live_")


@dataclass(frozen=True)
class Item:
    key: str
    title: str
    ok: bool
    # What is the case, in one sentence a person can act on.
    sentence: str
    # Where the fix is written down: a docs file and its section's anchor.
    docs: str


async def checklist(db: AsyncSession, settings: Settings) -> list[Item]:
    """Every item, in the order a person would fix them."""
    operators = int(await db.scalar(select(func.count()).select_from(Operator)) or 0)
    return [
        _public_url(settings),
        _admin_key(settings),
        _encryption_key(settings),
        _postgresql(settings),
        _backups(settings),
        _stripe_live(settings),
        _mail(settings),
        _operators(operators),
    ]


def is_production_ready(items: list[Item]) -> bool:
    return all(item.ok for item in items)


def _item(key: str, title: str, ok: bool, sentence: str, anchor: str) -> Item:
    return Item(key=key, title=title, ok=ok, sentence=sentence, docs=f"{DOCS}#{anchor}")


def _public_url(settings: Settings) -> Item:
    ok = settings.public_url.startswith("https://")
    sentence = (
        f"The public address {settings.public_url} is served over https."
        if ok
        else f"The public address {settings.public_url} is not https: sign-in cookies and webhooks need it."
    )
    return _item("public_url_https", "Public URL is https", ok, sentence, "public-url-is-https")


def _admin_key(settings: Settings) -> Item:
    ok = not is_placeholder_secret(settings.admin_api_key)
    sentence = (
        "The server key is a real secret."
        if ok
        else "The server key is missing, a placeholder or shorter than 16 characters."
    )
    return _item("admin_key", "Server key is a real secret", ok, sentence, "real-secrets")


def _encryption_key(settings: Settings) -> Item:
    key = settings.encryption_key
    if key is None:
        ok = False
        sentence = (
            "No encryption key is set: one generated on this machine is used, which other processes "
            "and a restored backup do not have."
        )
    else:
        try:
            Fernet(key.get_secret_value().encode())
            ok, sentence = True, "The encryption key is set and is a valid key."
        except ValueError:
            ok, sentence = False, "The encryption key is not a valid key (32 bytes, urlsafe base64)."
    return _item("encryption_key", "Encryption key is a real secret", ok, sentence, "real-secrets")


def _postgresql(settings: Settings) -> Item:
    ok = settings.database_url.startswith("postgresql")
    sentence = (
        "PostgreSQL is the database."
        if ok
        else "The database is SQLite: fine for trying entitle, but one file on one machine is no system "
        "of record."
    )
    return _item("postgresql", "PostgreSQL in use", ok, sentence, "postgresql-in-use")


def _backups(settings: Settings) -> Item:
    ok = settings.backups_configured
    sentence = (
        "Backups are confirmed as configured."
        if ok
        else "Nobody has confirmed that the database is backed up with point-in-time recovery."
    )
    return _item("backups", "Backups configured", ok, sentence, "backups-and-restore")


def _stripe_live(settings: Settings) -> Item:
    title = "Live Stripe keys when live"
    anchor = "live-stripe-keys"
    secret = settings.stripe_secret_key
    live_wanted = settings.environment is RunEnvironment.PRODUCTION
    if secret is None:
        return _item("stripe_live", title, True, "Stripe is not set up: web payments are off.", anchor)
    live_secret = secret.get_secret_value().startswith(_LIVE_SECRET_PREFIXES)
    live_publishable = (settings.stripe_publishable_key or "").startswith("pk_live_")
    if live_secret and not live_publishable:
        sentence = "The secret key is live but the publishable key is not: payment pages would fail."
        return _item("stripe_live", title, False, sentence, anchor)
    if live_wanted and not live_secret:
        sentence = "This is a production install with Stripe test keys: no real money can be taken."
        return _item("stripe_live", title, False, sentence, anchor)
    if live_secret and not settings.stripe_webhook_secret:
        sentence = "Live keys are set but no webhook signing secret: Stripe's events would be refused."
        return _item("stripe_live", title, False, sentence, anchor)
    sentence = "Live Stripe keys are set." if live_secret else "Stripe test keys are set, for a test install."
    return _item("stripe_live", title, True, sentence, anchor)


def _mail(settings: Settings) -> Item:
    ok = settings.smtp_url is not None
    sentence = (
        f"Mail is sent through SMTP, from {settings.email_from}."
        if ok
        else "No mail server is set: verification, reset and alert mails are only written to the log."
    )
    return _item("mail", "Mail configured", ok, sentence, "mail-configured")


def _operators(count: int) -> Item:
    ok = count >= 2
    sentence = (
        f"{count} operators can reach the dashboard."
        if ok
        else f"{'Only one operator' if count == 1 else 'No operator'} can reach the dashboard: "
        "add a second, so alerts reach someone and nobody is locked out alone."
    )
    return _item("operators", "At least two operators", ok, sentence, "at-least-two-operators")
