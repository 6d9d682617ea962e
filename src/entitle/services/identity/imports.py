"""Bring in the users of an app that already has them (`entitle import accounts FILE`).

Each JSON line is one person: `email` (required), `email_verified`, `password_hash`, `external_id`, `name`,
`created_at`, `apple_sub`, `google_sub`, `stripe_customer_id`. A line is imported in a transaction of
its own, so a bad line stores nothing and the others go on. Re-running the same file changes nothing:
a person is found again by external id or address, and only what is missing is added; anything that
would contradict what is stored (a subject or customer that belongs to someone else) fails the line.

Password hashes are stored as they are (bcrypt, argon2, Django and Werkzeug formats) and replaced by
argon2id at the person's first sign-in (services.identity.accounts.authenticate_password).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import ConfigDict, EmailStr, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.exc import DataError
from sqlalchemy.ext.asyncio import AsyncSession

from entitle import untrusted_json
from entitle.core import events
from entitle.core.models.accounts import Account, Identity, PasswordCredential
from entitle.db.engine import Database
from entitle.errors import EntitleError
from entitle.providers.stripe.models import StripeCustomer
from entitle.services.identity import accounts, hash_profiles, passwords
from entitle.services.identity.accounts import EMAIL_PROVIDER, normalize_email
from entitle.storable_text import StorableTextModel

ACCOUNT_IMPORTED = "account.imported"
# Longer lines are refused unread (cli/imports.py): a real line is a few hundred bytes.
MAX_LINE_BYTES = 64 * 1024
# No app's users predate this; earlier dates are mistakes (or overflow where they are stored).
EARLIEST_CREATED_AT = datetime(1970, 1, 1, tzinfo=UTC)


class ImportLine(StorableTextModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr = Field(max_length=320)
    email_verified: bool = False
    password_hash: str | None = Field(default=None, min_length=1, max_length=1000)
    external_id: str | None = Field(default=None, min_length=1, max_length=255)
    name: str | None = Field(default=None, max_length=200)
    created_at: datetime | None = None
    apple_sub: str | None = Field(default=None, min_length=1, max_length=320)
    google_sub: str | None = Field(default=None, min_length=1, max_length=320)
    stripe_customer_id: str | None = Field(default=None, pattern=r"^cus_[A-Za-z0-9]+$", max_length=64)

    @field_validator("password_hash")
    @classmethod
    def _known_format(cls, value: str | None) -> str | None:
        # Malformed or over the work-factor bounds: refused here rather than stored as a dead password.
        problem = passwords.hash_problem(value) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("created_at")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        try:
            # In UTC, as stored: 0001-01-01T00:00+14:00 has no UTC time at all.
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range") from None
        if not EARLIEST_CREATED_AT <= value <= datetime.now(UTC) + timedelta(days=1):
            raise ValueError(f"is out of range ({EARLIEST_CREATED_AT.year} to now)")
        return value


class LineOutcome(StrEnum):
    # A new account was made.
    CREATED = "created"
    # The account existed; something missing (an identity, a customer, a password) was added.
    UPDATED = "updated"
    # Everything on the line was already there.
    UNCHANGED = "unchanged"
    # The line was refused; nothing of it was stored.
    FAILED = "failed"


@dataclass
class ImportSummary:
    counts: dict[LineOutcome, int] = field(default_factory=lambda: {outcome: 0 for outcome in LineOutcome})
    # (line number, why) for each refused line.
    failures: list[tuple[int, str]] = field(default_factory=list)


class LineRefused(EntitleError):
    default_code = "import_line_refused"


def parse_line(text: str) -> ImportLine:
    try:
        # Depth-limited: `[` x 100,000 is a refused line, not a RecursionError that ends the run.
        data = untrusted_json.loads(text)
    except untrusted_json.JSONTooDeep as exc:
        raise LineRefused(f"not JSON: {exc}") from exc
    except ValueError as exc:
        raise LineRefused("not JSON") from exc
    if not isinstance(data, dict):
        raise LineRefused("not a JSON object")
    try:
        return ImportLine.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'line'}: {error['msg']}" for error in exc.errors()
        )
        raise LineRefused(problems) from exc


async def import_line(database: Database, text: str) -> LineOutcome:
    """Import one line in its own transaction; raises LineRefused (nothing stored) when it cannot be."""
    line = parse_line(text)
    try:
        async with database.transaction() as db:
            outcome = await _import(db, line)
    except DataError as exc:
        # A value the database cannot hold that the checks above let through: this line, not the run.
        raise LineRefused(f"the database refused a value ({exc.orig.__class__.__name__})") from exc
    if line.password_hash and outcome is not LineOutcome.UNCHANGED:
        hash_profiles.forget_profiles_of(database.engine)
    return outcome


async def _import(db: AsyncSession, line: ImportLine) -> LineOutcome:
    email = normalize_email(str(line.email))
    account = await _existing_account(db, line, email)
    outcome = LineOutcome.UNCHANGED
    if account is None:
        account = await accounts.create_account(
            db,
            email=email,
            name=line.name,
            via="import",
            external_id=line.external_id,
            created_at=line.created_at,
        )
        outcome = LineOutcome.CREATED
    elif line.external_id and account.external_id != line.external_id:
        if account.external_id is not None:
            raise LineRefused(f"{email} is already imported with external_id {account.external_id!r}")
        account.external_id = line.external_id
        outcome = LineOutcome.UPDATED
    added = []
    if line.password_hash and await _add_password(db, account, email, line):
        added.append("password")
    for provider, subject in (("apple", line.apple_sub), ("google", line.google_sub)):
        if subject and await _add_identity(db, account, provider, subject, email, line.email_verified):
            added.append(provider)
    if line.stripe_customer_id and await _add_customer(db, account, line.stripe_customer_id):
        added.append("stripe_customer")
    if added and outcome is LineOutcome.UNCHANGED:
        outcome = LineOutcome.UPDATED
    if outcome is not LineOutcome.UNCHANGED:
        await events.record_event(
            db, account.id, ACCOUNT_IMPORTED, {"external_id": line.external_id, "added": added}
        )
    return outcome


async def _existing_account(db: AsyncSession, line: ImportLine, email: str) -> Account | None:
    by_external = None
    if line.external_id:
        by_external = await db.scalar(select(Account).where(Account.external_id == line.external_id))
        if by_external is not None and by_external.is_deleted:
            raise LineRefused(f"the account with external_id {line.external_id!r} was deleted")
    by_email = await db.scalar(
        select(Account)
        .where(Account.email == email, Account.deleted_at.is_(None))
        .order_by(Account.created_at)
        .limit(1)
    )
    if by_external is not None and by_email is not None and by_external.id != by_email.id:
        raise LineRefused(f"external_id {line.external_id!r} and {email} belong to two different accounts")
    return by_external or by_email


async def _add_password(db: AsyncSession, account: Account, email: str, line: ImportLine) -> bool:
    identity = await db.scalar(
        select(Identity).where(Identity.provider == EMAIL_PROVIDER, Identity.subject == email)
    )
    if identity is not None:
        if identity.account_id != account.id:
            raise LineRefused(f"{email} signs into another account with a password")
        # Already imported (or set since): a re-run never overwrites a password the person may have changed.
        return False
    identity = Identity(
        account_id=account.id,
        provider=EMAIL_PROVIDER,
        subject=email,
        email=email,
        email_verified=line.email_verified,
    )
    db.add(identity)
    await db.flush()
    assert line.password_hash is not None
    db.add(
        PasswordCredential(identity_id=identity.id, account_id=account.id, password_hash=line.password_hash)
    )
    await db.flush()
    return True


async def _add_identity(
    db: AsyncSession, account: Account, provider: str, subject: str, email: str, verified: bool
) -> bool:
    identity = await db.scalar(
        select(Identity).where(Identity.provider == provider, Identity.subject == subject)
    )
    if identity is not None:
        if identity.account_id != account.id:
            raise LineRefused(f"{provider}_sub {subject!r} already signs into another account")
        return False
    db.add(
        Identity(
            account_id=account.id,
            provider=provider,
            subject=subject,
            email=email,
            # The app's own record of the address; a later sign-in refreshes it from the provider's token.
            email_verified=verified,
            is_private_relay=email.endswith("privaterelay.appleid.com"),
        )
    )
    await db.flush()
    return True


async def _add_customer(db: AsyncSession, account: Account, customer_id: str) -> bool:
    existing = await db.scalar(select(StripeCustomer).where(StripeCustomer.customer_id == customer_id))
    if existing is not None:
        if existing.account_id != account.id:
            raise LineRefused(f"Stripe customer {customer_id} belongs to another account")
        return False
    mine = await db.get(StripeCustomer, account.id)
    if mine is not None:
        raise LineRefused(f"the account already has Stripe customer {mine.customer_id}")
    # `entitle sync stripe` then picks up the customer's subscriptions.
    db.add(StripeCustomer(account_id=account.id, customer_id=customer_id, livemode=False))
    await db.flush()
    return True
