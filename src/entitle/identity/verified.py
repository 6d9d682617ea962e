"""What a verified identity token tells us about the person, independent of the provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from entitle.email_addresses import canonical_email_or_none

Provider = Literal["apple", "google"]


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """A provider's signed statement: this subject, with this email (verified or not)."""

    provider: Provider
    subject: str
    email: str | None
    # True only when the provider itself vouches for the address; linking relies on it.
    email_verified: bool
    # Apple's Hide My Email relay address: unique per app, so it never proves a shared identity.
    is_private_relay: bool
    # The name from the token, when the provider puts one there (Google does; Apple never does).
    name: str | None = None
    # The token's `iat` (seconds): a revoked identity comes back only with a token issued after that.
    issued_at: float | None = None
    # The client id the token was issued to (its `aud`): Apple's code exchange must name the same one.
    audience: str | None = None


def claim_is_true(value: Any) -> bool:
    """Read a boolean claim that providers send either as a JSON bool or as the string "true"."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return False


def claim_email(value: Any) -> str | None:
    """The token's address, checked and normalised exactly as a typed one; None when it is not valid.

    An invalid address is treated as none: the person proved who they are to the provider, so the
    sign-in goes on (an identity may have no address, as Apple's often has none), but nothing is ever
    mailed to, linked by or looked up with a string that registration would refuse.
    """
    return canonical_email_or_none(value)
