"""The App Store card: prove the In-App Purchase key with Apple, and that Apple's notifications arrive.

The key is proven by asking Apple for a made-up transaction (providers.appstore.connection tells a
refused key from a not-found). Notifications are proven end to end: "Request a test notification" makes
Apple POST a signed `TEST` notification to /webhooks/appstore, which verifies and stores it in the inbox
like any other; the card reads the newest one's received time, so it shows what arrived, not what was
asked for.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import httpx
from appstoreserverlibrary.api_client import APIException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.context import AppContext
from entitle.core.models.events import ProviderEvent
from entitle.db.types import utcnow
from entitle.providers.appstore import connection
from entitle.providers.appstore.errors import AppStoreMisconfigured
from entitle.providers.appstore.keys import in_app_purchase_key
from entitle.services.setup import settings_cards
from entitle.services.setup.cards import Card
from entitle.services.setup.timing import ago

TEST_TYPE = "TEST"


@dataclass(frozen=True)
class AppStoreKey:
    """What the card asks for to call the App Store Server API."""

    bundle_id: str
    issuer_id: str
    key_id: str
    # The `.p8` file's text (PEM).
    private_key: str


@dataclass(frozen=True)
class TestRequest:
    # Apple's testNotificationToken, None when Apple refused the request.
    token: str | None
    sentence: str


def configured_key(context: AppContext) -> AppStoreKey | None:
    """The key in the effective settings, or None when it is not (or not wholly, or not readably) set."""
    try:
        key = in_app_purchase_key(context.settings, needed_for="check the App Store key")
    except AppStoreMisconfigured:
        return None
    if key is None:
        return None
    try:
        pem = key.signing_key.decode()
    except UnicodeDecodeError:
        return None
    return AppStoreKey(key.bundle_id, key.issuer_id, key.key_id, pem)


async def check(context: AppContext, key: AppStoreKey) -> connection.KeyCheck:
    """Ask Apple whether it takes `key` for the bundle id (a made-up transaction's history)."""
    return await connection.check_key(
        context.http,
        bundle_id=key.bundle_id,
        issuer_id=key.issuer_id,
        key_id=key.key_id,
        private_key=key.private_key,
        base_url=context.settings.apple_api_base,
    )


async def request_test_notification(context: AppContext, key: AppStoreKey) -> TestRequest:
    try:
        token = await connection.request_test_notification(
            context.http,
            bundle_id=key.bundle_id,
            issuer_id=key.issuer_id,
            key_id=key.key_id,
            private_key=key.private_key,
            base_url=context.settings.apple_api_base,
        )
    except connection.InvalidKey as exc:
        return TestRequest(None, str(exc))
    except APIException as exc:
        return TestRequest(
            None, f"Apple refused to send a test notification ({connection.apple_error(exc)})."
        )
    except httpx.HTTPError as exc:
        return TestRequest(
            None, f"The App Store Server API could not be reached: {connection.network_error(exc)}."
        )
    return TestRequest(token, "Apple is sending a test notification to /webhooks/appstore.")


async def test_notification_status(context: AppContext, key: AppStoreKey, token: str) -> str:
    """Apple's own word on delivering the test notification `token` names, in one sentence."""
    try:
        status = await connection.test_notification_status(
            context.http,
            token,
            bundle_id=key.bundle_id,
            issuer_id=key.issuer_id,
            key_id=key.key_id,
            private_key=key.private_key,
            base_url=context.settings.apple_api_base,
        )
    except connection.InvalidKey as exc:
        return str(exc)
    except APIException as exc:
        return f"Apple did not report on the test notification ({connection.apple_error(exc)})."
    except httpx.HTTPError as exc:
        return f"The App Store Server API could not be reached: {connection.network_error(exc)}."
    return status.sentence


async def last_test_notification(db: AsyncSession) -> dt.datetime | None:
    """When the newest `TEST` notification reached /webhooks/appstore (verified and stored)."""
    received: dt.datetime | None = await db.scalar(
        select(ProviderEvent.received_at)
        .where(ProviderEvent.provider == "app_store", ProviderEvent.type == TEST_TYPE)
        .order_by(ProviderEvent.received_at.desc())
        .limit(1)
    )
    return received


async def card(db: AsyncSession, context: AppContext, *, checked: connection.KeyCheck | None = None) -> Card:
    """The App Store card; `checked` is a check just made (the page passes it to show its answer)."""
    base = await settings_cards.app_store(db, context)
    if base.state == "not_set":
        return base
    now = utcnow()
    if checked is not None and not checked.ok:
        return replace(base, state="failing", sentence=checked.sentence, checked_at=now)
    arrived = await last_test_notification(db)
    if arrived is not None:
        sentence = f"Last test notification received {ago(arrived, now)}."
        return replace(base, state="verified", sentence=sentence, checked_at=arrived)
    if checked is not None:
        return replace(base, state="verified", sentence=checked.sentence, checked_at=now)
    if configured_key(context) is None:
        return replace(base, sentence=f"{base.sentence} Add the In-App Purchase key to use Apple's API.")
    return replace(base, sentence=f"{base.sentence} Check the key, then request a test notification.")
