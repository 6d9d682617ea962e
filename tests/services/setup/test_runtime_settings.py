"""Settings saved from /admin/setup: validated, encrypted, overlaid on the environment, applied at once."""

from __future__ import annotations

import logging
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from entitle.context import AppContext, build_context
from entitle.core.models.setup import SavedSetting
from entitle.errors import Conflict, InvalidRequest
from entitle.services.reporting.status import server_status
from entitle.services.setup.runtime_settings import reload_settings, save_settings, source_of
from tests.conftest import make_settings

SECRET = "sk_test_" + "s3cr3t" * 6
NOT_A_KEY = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----"


async def save(context: AppContext, values: dict[str, str | None]) -> None:
    async with context.database.transaction() as db:
        await save_settings(db, context, values, by="test")
    await reload_settings(context)


async def test_a_saved_key_applies_at_once_and_is_encrypted_at_rest(context: AppContext) -> None:
    assert server_status(context.settings)["stores"]["stripe"]["configured"] is False
    stripe_before = context.providers["stripe"]
    providers = context.providers

    await save(context, {"stripe_secret_key": SECRET, "stripe_publishable_key": "pk_test_abc"})

    assert context.settings.stripe_secret_key is not None
    assert context.settings.stripe_secret_key.get_secret_value() == SECRET
    assert server_status(context.settings)["stores"]["stripe"] == {"configured": True, "mode": "test"}
    # The pipeline holds the same dict: rebuilt in place, with a provider that has the key.
    assert context.providers is providers
    assert context.providers["stripe"] is not stripe_before
    assert context.providers["stripe"].configured  # type: ignore[attr-defined]
    assert source_of(context, "stripe_secret_key") == "saved"
    assert source_of(context, "apple_bundle_id") == "unset"
    async with context.database.sessionmaker() as db:
        rows = {row.name: row for row in (await db.scalars(select(SavedSetting))).all()}
    assert SECRET not in rows["stripe_secret_key"].value
    assert rows["stripe_publishable_key"].value == "pk_test_abc"
    assert rows["stripe_secret_key"].updated_by == "test"


async def test_removing_a_saved_value_falls_back_to_the_environment(context: AppContext) -> None:
    await save(context, {"apple_bundle_id": "com.example.app"})
    assert context.settings.apple_bundle_id == "com.example.app"
    await save(context, {"apple_bundle_id": ""})
    assert context.settings.apple_bundle_id is None
    assert source_of(context, "apple_bundle_id") == "unset"


async def test_another_context_on_the_same_database_reads_what_was_saved(
    context: AppContext, settings: Any, signing_key: Any
) -> None:
    await save(context, {"google_client_ids": "a.apps.googleusercontent.com, b.apps.googleusercontent.com"})
    other = build_context(settings, signing_key=signing_key)
    try:
        assert await reload_settings(other) is True
        assert other.settings.google_client_ids == [
            "a.apps.googleusercontent.com",
            "b.apps.googleusercontent.com",
        ]
        assert server_status(other.settings)["sign_in"]["google"] is True
        # Nothing changed since: no rebuild.
        assert await reload_settings(other) is False
    finally:
        await other.aclose()


async def test_an_invalid_value_is_refused_naming_the_field(context: AppContext) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await save(context, {"smtp_url": "mail.example.com"})
    assert refused.value.code == "invalid_setting"
    assert refused.value.details == {"field": "smtp_url"}
    with pytest.raises(InvalidRequest) as refused:
        await save(context, {"apple_app_id": "not a number"})
    assert refused.value.details == {"field": "apple_app_id"}
    with pytest.raises(InvalidRequest) as refused:
        await save(context, {"database_url": "sqlite://"})
    assert refused.value.code == "invalid_setting"
    assert context.settings.smtp_url is None


async def test_a_pasted_sign_in_key_that_is_no_key_is_refused(context: AppContext) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await save(
            context,
            {
                "apple_signin_team_id": "ABCDE12345",
                "apple_signin_key_id": "KEY1234567",
                "apple_signin_private_key": NOT_A_KEY,
            },
        )
    assert refused.value.details == {"field": "apple_signin_private_key"}
    assert "paste the whole file" in refused.value.message
    assert "ENTITLE_" not in refused.value.message and "bm90IGEga2V5" not in refused.value.message


async def test_a_key_path_on_the_server_cannot_be_saved_from_a_page(context: AppContext) -> None:
    # A page must not make the server read its own files: a key file's path stays in the environment.
    with pytest.raises(InvalidRequest) as refused:
        await save(context, {"apple_signin_private_key_path": "/etc/passwd"})
    assert refused.value.details == {"field": "apple_signin_private_key_path"}


async def test_a_pasted_sign_in_key_signs_apples_client_secret(context: AppContext) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    await save(
        context,
        {
            "apple_signin_team_id": "ABCDE12345",
            "apple_signin_key_id": "KEY1234567",
            # As a textarea posts it: CRLF, and a blank line the paste picked up.
            "apple_signin_private_key": pem.replace("\n", "\r\n") + "\r\n",
        },
    )
    api = context.accounts.apple_api
    assert api is not None
    secret = api.client_secret("com.example.app")
    claims = jwt.decode(secret, key.public_key(), algorithms=["ES256"], audience="https://appleid.apple.com")
    assert claims["iss"] == "ABCDE12345" and jwt.get_unverified_header(secret)["kid"] == "KEY1234567"
    async with context.database.sessionmaker() as db:
        row = await db.get(SavedSetting, "apple_signin_private_key")
    assert row is not None and "PRIVATE KEY" not in row.value


async def test_a_setting_given_in_the_environment_cannot_be_saved(
    database_url: str, signing_key: Any
) -> None:
    context = build_context(
        make_settings(database_url, stripe_secret_key="sk_test_" + "e" * 24), signing_key=signing_key
    )
    try:
        assert source_of(context, "stripe_secret_key") == "environment"
        with pytest.raises(Conflict) as refused:
            await save(context, {"stripe_secret_key": SECRET})
        assert refused.value.code == "set_in_environment"
    finally:
        await context.aclose()


async def test_the_environment_wins_over_a_value_saved_earlier(
    context: AppContext, database_url: str, signing_key: Any
) -> None:
    await save(context, {"stripe_publishable_key": "pk_test_saved"})
    pinned = build_context(
        make_settings(database_url, stripe_publishable_key="pk_test_env"), signing_key=signing_key
    )
    try:
        await reload_settings(pinned)
        assert pinned.settings.stripe_publishable_key == "pk_test_env"
        assert source_of(pinned, "stripe_publishable_key") == "environment"
    finally:
        await pinned.aclose()


async def test_no_secret_reaches_the_log(context: AppContext, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await save(context, {"stripe_secret_key": SECRET, "smtp_url": "smtp://user:hunter2hunter2@mail:587"})
    assert "stripe_secret_key" in caplog.text
    assert SECRET not in caplog.text
    assert "hunter2hunter2" not in caplog.text


async def test_a_control_character_is_refused(context: AppContext) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await save(context, {"stripe_secret_key": SECRET + "\x00"})
    assert refused.value.details == {"field": "stripe_secret_key"}
    with pytest.raises(InvalidRequest):
        await save(context, {"email_from": "A\nBcc: b@example.com"})
