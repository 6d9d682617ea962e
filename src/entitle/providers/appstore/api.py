"""The App Store Server API, through Apple's official async client, with retries and our own HTTP client.

The official `AsyncAppStoreServerAPIClient` signs the ES256 bearer token and parses Apple's answers; we
subclass it only to send its requests through the process's pooled `httpx.AsyncClient` and to a base URL
from `ENTITLE_APPLE_API_BASE` (a local stand-in in tests). Apple rate-limits per app (429, errorCode
4290000) and has transient 5xx: those are retried with exponential backoff and jitter, then reported as
`AppStoreApiUnavailable`. Production and Sandbox are separate services; each call names the environment.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
from appstoreserverlibrary.api_client import APIException, AsyncAppStoreServerAPIClient
from appstoreserverlibrary.models.Environment import Environment as AppleEnvironment
from appstoreserverlibrary.models.LastTransactionsItem import LastTransactionsItem
from appstoreserverlibrary.models.NotificationHistoryRequest import NotificationHistoryRequest
from appstoreserverlibrary.models.UpdateAppAccountTokenRequest import UpdateAppAccountTokenRequest

from entitle.providers.appstore.errors import AppStoreApiUnavailable, AppStoreMisconfigured
from entitle.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# Apple's own answer when it does not know a transaction id (errorCode 4040010).
TRANSACTION_NOT_FOUND = 4040010


class _PooledClient(AsyncAppStoreServerAPIClient):
    """Apple's client, sending through an injected httpx client to an overridable base URL."""

    def __init__(self, *, http: httpx.AsyncClient, base_url: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._own_client = self.http_client  # created by the library; closed in aclose
        self._http = http
        if base_url:
            self._base_url = base_url.rstrip("/")

    async def _execute_request(
        self,
        method: str,
        url: str,
        params: dict[str, str | list[str]],
        headers: dict[str, str],
        json: dict[str, Any] | None,
        data: bytes | None,
    ) -> httpx.Response:
        return await self._http.request(method, url, params=params, headers=headers, json=json, content=data)

    async def aclose(self) -> None:
        await self._own_client.aclose()


class AppStoreApi:
    """Calls the App Store Server API for one app in Production and Sandbox."""

    def __init__(
        self,
        *,
        signing_key: bytes,
        key_id: str,
        issuer_id: str,
        bundle_id: str,
        http: httpx.AsyncClient,
        base_url: str | None = None,
        max_attempts: int = 5,
        backoff: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clients = {
            environment: _PooledClient(
                http=http,
                base_url=base_url,
                signing_key=signing_key,
                key_id=key_id,
                issuer_id=issuer_id,
                bundle_id=bundle_id,
                environment=environment,
            )
            for environment in (AppleEnvironment.PRODUCTION, AppleEnvironment.SANDBOX)
        }
        self._max_attempts = max(1, max_attempts)
        self._backoff = backoff
        self._sleep = sleep
        # How many times Apple asked us to slow down; `entitle sync appstore` reports it.
        self.rate_limited = 0

    @classmethod
    def from_settings(cls, settings: Settings, http: httpx.AsyncClient) -> AppStoreApi | None:
        """None when the Server API credentials are not configured (the API is optional)."""
        if not (settings.apple_issuer_id and settings.apple_key_id and settings.apple_private_key_path):
            return None
        if not settings.apple_bundle_id:
            raise AppStoreMisconfigured(
                "ENTITLE_APPLE_BUNDLE_ID must be set to use the App Store Server API."
            )
        try:
            key = Path(settings.apple_private_key_path).read_bytes()
        except OSError as exc:
            raise AppStoreMisconfigured(f"ENTITLE_APPLE_PRIVATE_KEY_PATH cannot be read: {exc}.") from exc
        return cls(
            signing_key=key,
            key_id=settings.apple_key_id,
            issuer_id=settings.apple_issuer_id,
            bundle_id=settings.apple_bundle_id,
            http=http,
            base_url=settings.apple_api_base,
        )

    def _client(self, environment: str | AppleEnvironment) -> _PooledClient:
        try:
            return self._clients[AppleEnvironment(environment)]
        except (ValueError, KeyError):
            raise AppStoreApiUnavailable(
                f"The App Store Server API has no {environment} environment."
            ) from None

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(1, self._max_attempts + 1):
            try:
                return await call()
            except APIException as exc:
                retryable = exc.http_status_code == 429 or exc.http_status_code >= 500
                if exc.http_status_code == 429:
                    self.rate_limited += 1
                if not retryable or attempt == self._max_attempts:
                    raise AppStoreApiUnavailable(
                        f"The App Store Server API refused {what} (HTTP {exc.http_status_code}, "
                        f"error {exc.raw_api_error})."
                    ) from exc
            except httpx.HTTPError as exc:
                if attempt == self._max_attempts:
                    raise AppStoreApiUnavailable(f"The App Store Server API did not answer {what}.") from exc
            delay = self._backoff * (2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            log.info("App Store Server API: retrying %s in %.2fs (attempt %d)", what, delay, attempt)
            await self._sleep(delay)
        raise AssertionError("unreachable")

    async def subscription_statuses(
        self, environment: str, transaction_id: str
    ) -> list[LastTransactionsItem]:
        """Every subscription of the customer who made `transaction_id` (Get All Subscription Statuses)."""
        client = self._client(environment)
        response = await self._call(
            "Get All Subscription Statuses", lambda: client.get_all_subscription_statuses(transaction_id)
        )
        return [item for group in response.data or [] for item in group.lastTransactions or []]

    async def set_app_account_token(
        self, environment: str, original_transaction_id: str, token: uuid.UUID
    ) -> None:
        client = self._client(environment)
        request = UpdateAppAccountTokenRequest(appAccountToken=str(token))
        await self._call(
            "Set App Account Token", lambda: client.set_app_account_token(original_transaction_id, request)
        )

    async def notification_history(
        self, environment: str, start: dt.datetime, end: dt.datetime
    ) -> AsyncIterator[str]:
        """Every signedPayload Apple sent (or tried to send) between start and end, page by page."""
        client = self._client(environment)
        request = NotificationHistoryRequest(
            startDate=int(start.timestamp() * 1000), endDate=int(end.timestamp() * 1000)
        )
        token: str | None = None
        while True:
            page = await self._call(
                "Get Notification History",
                lambda page_token=token: client.get_notification_history(page_token, request),  # type: ignore[misc]
            )
            for item in page.notificationHistory or []:
                if item.signedPayload:
                    yield item.signedPayload
            token = page.paginationToken
            if not page.hasMore or not token:
                return

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
