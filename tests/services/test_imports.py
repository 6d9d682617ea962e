"""Imported people keep their ways in: their Apple and Google subjects sign into the imported account."""

from __future__ import annotations

import json

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.identity import VerifiedIdentity
from entitle.services.identity import identities
from entitle.services.identity.imports import LineOutcome, LineRefused, import_line


async def test_imported_subjects_sign_into_the_imported_account(
    context: AppContext, db: AsyncSession
) -> None:
    line = json.dumps(
        {"email": "pat@example.com", "external_id": "u-1", "apple_sub": "001.pat", "google_sub": "g-pat"}
    )
    assert await import_line(context.database, line) is LineOutcome.CREATED
    assert await import_line(context.database, line) is LineOutcome.UNCHANGED
    via_google = await identities.sign_in_with_identity(
        db,
        VerifiedIdentity(
            provider="google",
            subject="g-pat",
            email="pat@example.com",
            email_verified=True,
            is_private_relay=False,
        ),
    )
    via_apple = await identities.sign_in_with_identity(
        db,
        VerifiedIdentity(
            provider="apple",
            subject="001.pat",
            email="x@privaterelay.appleid.com",
            email_verified=True,
            is_private_relay=True,
        ),
    )
    assert not via_google.created and not via_apple.created
    assert via_google.account.id == via_apple.account.id
    assert via_google.account.external_id == "u-1"


async def test_a_later_line_adds_what_was_missing(context: AppContext) -> None:
    assert (
        await import_line(context.database, json.dumps({"email": "pat@example.com"})) is LineOutcome.CREATED
    )
    more = json.dumps({"email": "PAT@example.com", "external_id": "u-9", "google_sub": "g-9"})
    assert await import_line(context.database, more) is LineOutcome.UPDATED
    assert await import_line(context.database, more) is LineOutcome.UNCHANGED


async def test_a_line_with_a_nul_is_refused_by_field_and_stores_nothing(context: AppContext) -> None:
    # PostgreSQL cannot store NUL: the line is refused before the database, on both databases.
    line = json.dumps({"email": "pat@example.com", "external_id": "u\x001", "name": "Pat"})
    with pytest.raises(LineRefused, match="external_id"):
        await import_line(context.database, line)
    clean = json.dumps({"email": "pat@example.com"})
    assert await import_line(context.database, clean) is LineOutcome.CREATED
