"""Proving an In-App Purchase key works, and Apple's test notification, through the App Store Server API.

Set-up wants Apple's first answer, not a resilient one: these calls go once, without the retries and
pacing of `AppStoreApi`, and turn what Apple said into one sentence an operator can act on. A made-up
transaction id tells the cases apart: Apple checks the bearer token first (401, no body, when the
issuer, key id or key is wrong), then looks the id up (404 with 4040010 TransactionIdNotFound when the
key is good). Production and Sandbox take the same key, so Production is asked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import httpx
from appstoreserverlibrary.api_client import APIException, GetTransactionHistoryVersion
from appstoreserverlibrary.models.Environment import Environment as AppleEnvironment
from appstoreserverlibrary.models.TransactionHistoryRequest import TransactionHistoryRequest

from entitle.providers.appstore.api import _PooledClient

# A transaction id no app has: Apple answers it with 4040010 once the key is accepted.
MADE_UP_TRANSACTION_ID = "2000000000000000"
# Apple's "not found" error codes (404xxxx): each means the key got past authentication.
_NOT_FOUND_RANGE = range(4040000, 4050000)

Outcome = Literal["accepted", "refused", "error", "unreachable"]


@dataclass(frozen=True)
class KeyCheck:
    outcome: Outcome
    sentence: str

    @property
    def ok(self) -> bool:
        return self.outcome == "accepted"


@dataclass(frozen=True)
class TestNotificationStatus:
    # None while Apple has not tried to send it yet.
    result: str | None
    attempted_at: dt.datetime | None
    sentence: str


class InvalidKey(ValueError):
    """The `.p8` text is not an EC private key in PEM form."""


def _client(
    http: httpx.AsyncClient,
    *,
    bundle_id: str,
    issuer_id: str,
    key_id: str,
    private_key: str,
    base_url: str | None,
) -> _PooledClient:
    try:
        return _PooledClient(
            http=http,
            base_url=base_url,
            environment=AppleEnvironment.PRODUCTION,
            signing_key=private_key.encode(),
            key_id=key_id,
            issuer_id=issuer_id,
            bundle_id=bundle_id,
        )
    except (ValueError, TypeError) as exc:
        # The library loads the key when the client is made; a pasted certificate or a truncated key
        # fails here, before anything is sent to Apple.
        raise InvalidKey(
            "The .p8 key is not a private key in PEM form (-----BEGIN PRIVATE KEY-----)."
        ) from exc


@asynccontextmanager
async def _connected(
    http: httpx.AsyncClient,
    *,
    bundle_id: str,
    issuer_id: str,
    key_id: str,
    private_key: str,
    base_url: str | None,
) -> AsyncIterator[_PooledClient]:
    """A client for one call, closed after it (the pooled `http` stays open)."""
    client = _client(
        http,
        bundle_id=bundle_id,
        issuer_id=issuer_id,
        key_id=key_id,
        private_key=private_key,
        base_url=base_url,
    )
    try:
        yield client
    finally:
        await client.aclose()


def apple_error(exc: APIException) -> str:
    if exc.raw_api_error is None:
        return f"HTTP {exc.http_status_code}"
    # Apple's messages end with a period; the sentence around them has its own.
    message = f": {exc.error_message.rstrip('.')}" if exc.error_message else ""
    return f"HTTP {exc.http_status_code}, error {exc.raw_api_error}{message}"


async def check_key(
    http: httpx.AsyncClient,
    *,
    bundle_id: str,
    issuer_id: str,
    key_id: str,
    private_key: str,
    base_url: str | None = None,
) -> KeyCheck:
    """Ask Get Transaction History for a made-up id: a not-found proves the key, a 401 refuses it."""
    try:
        client = _client(
            http,
            bundle_id=bundle_id,
            issuer_id=issuer_id,
            key_id=key_id,
            private_key=private_key,
            base_url=base_url,
        )
    except InvalidKey as exc:
        return KeyCheck("refused", str(exc))
    try:
        await client.get_transaction_history(
            MADE_UP_TRANSACTION_ID, None, TransactionHistoryRequest(), GetTransactionHistoryVersion.V2
        )
    except APIException as exc:
        if exc.http_status_code == 401:
            return KeyCheck(
                "refused",
                f"Apple refused the key ({apple_error(exc)} Unauthorized): check the issuer id, the key id "
                "and that the .p8 key is the In-App Purchase key with that id.",
            )
        if exc.raw_api_error in _NOT_FOUND_RANGE:
            return KeyCheck(
                "accepted",
                f"Apple accepted the key: asked for a made-up transaction, it answered {apple_error(exc)}.",
            )
        return KeyCheck("error", f"Apple answered {apple_error(exc)}.")
    except httpx.HTTPError as exc:
        return KeyCheck(
            "unreachable", f"The App Store Server API could not be reached: {network_error(exc)}."
        )
    finally:
        await client.aclose()
    # An answer with transactions for an id we made up: the key is good all the same.
    return KeyCheck("accepted", "Apple accepted the key.")


async def request_test_notification(
    http: httpx.AsyncClient,
    *,
    bundle_id: str,
    issuer_id: str,
    key_id: str,
    private_key: str,
    base_url: str | None = None,
) -> str:
    """Request a Test Notification: Apple sends a `TEST` notification to the app's server URL and
    answers a token for Get Test Notification Status. Raises `APIException` or `httpx.HTTPError`."""
    async with _connected(
        http,
        bundle_id=bundle_id,
        issuer_id=issuer_id,
        key_id=key_id,
        private_key=private_key,
        base_url=base_url,
    ) as client:
        response = await client.request_test_notification()
    if not response.testNotificationToken:
        raise APIException(200, None, "Apple answered no testNotificationToken.")  # type: ignore[call-arg]
    return response.testNotificationToken


async def test_notification_status(
    http: httpx.AsyncClient,
    token: str,
    *,
    bundle_id: str,
    issuer_id: str,
    key_id: str,
    private_key: str,
    base_url: str | None = None,
) -> TestNotificationStatus:
    """Apple's record of its last attempt to send the test notification `token` names."""
    async with _connected(
        http,
        bundle_id=bundle_id,
        issuer_id=issuer_id,
        key_id=key_id,
        private_key=private_key,
        base_url=base_url,
    ) as client:
        response = await client.get_test_notification_status(token)
    attempts = response.sendAttempts or []
    if not attempts:
        return TestNotificationStatus(None, None, "Apple has not sent the test notification yet.")
    last = attempts[-1]
    result = last.rawSendAttemptResult
    at = dt.datetime.fromtimestamp(last.attemptDate / 1000, dt.UTC) if last.attemptDate else None
    if result == "SUCCESS":
        return TestNotificationStatus(
            result, at, "Apple sent the test notification and this server accepted it."
        )
    return TestNotificationStatus(result, at, f"Apple could not deliver the test notification: {result}.")


def network_error(exc: httpx.HTTPError) -> str:
    return str(exc) or type(exc).__name__
