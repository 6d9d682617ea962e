"""Email addresses from outside, read the one way sign-in reads them.

Registration and sign-in take an address through pydantic's `EmailStr` (email-validator: the syntax is
checked and the domain IDNA-normalised, so `bob@ｅｘａｍｐｌｅ．ｃｏｍ` is `bob@example.com`), then
lower-case it (services.identity.accounts.normalize_email). Every other address that comes in (an Apple,
Google or external sign-in token's, a support lookup's, a mail's recipient) goes through
`canonical_email`, which does exactly that: a token's `"a@example.com, b@example.com"` is no address
at all, and a lookup finds what sign-in stored.
"""

from __future__ import annotations

from pydantic.networks import validate_email

MAX_EMAIL_LENGTH = 320


class InvalidEmailAddress(ValueError):
    """Not an address a person could type at registration; the message says why."""


def canonical_email(value: str) -> str:
    """The address as registration and sign-in store it; InvalidEmailAddress when they would refuse it."""
    if len(value) > MAX_EMAIL_LENGTH:
        raise InvalidEmailAddress(f"longer than {MAX_EMAIL_LENGTH} characters")
    try:
        _, address = validate_email(value)
    except ValueError as exc:
        raise InvalidEmailAddress(str(exc)) from None
    return address.strip().lower()


def canonical_email_or_none(value: object) -> str | None:
    """`canonical_email` for a claim of any type; None when it is not a valid address."""
    if not isinstance(value, str):
        return None
    try:
        return canonical_email(value)
    except InvalidEmailAddress:
        return None
