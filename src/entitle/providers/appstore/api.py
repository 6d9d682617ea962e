"""The App Store Server API, through Apple's official async client, with retries and our own HTTP client.

The official `AsyncAppStoreServerAPIClient` signs the ES256 bearer token and parses Apple's answers; we
subclass it only to send its requests through the process's pooled `httpx.AsyncClient` and to a base URL
from `ENTITLE_APPLE_API_BASE` (a local stand-in in tests). Production and Sandbox are separate services;
each call names the environment.

Apple rate-limits each endpoint per app (429, errorCode 4290000): every request is paced
(`entitle.pacing`) under Apple's documented limits, and a 429 is retried within seconds, after the
moment Apple's `Retry-After` names or a short backoff with jitter, held in the pacer so the endpoint's
other callers wait too; only after about 20 seconds of that does it become `AppStoreApiUnavailable`.
Transient 5xx and network failures are retried a few times with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

import httpx
from appstoreserverlibrary.api_client import APIException, AsyncAppStoreServerAPIClient
from appstoreserverlibrary.models.ConsumptionRequest import ConsumptionRequest
from appstoreserverlibrary.models.Environment import Environment as AppleEnvironment
from appstoreserverlibrary.models.LastTransactionsItem import LastTransactionsItem
from appstoreserverlibrary.models.NotificationHistoryRequest import NotificationHistoryRequest
from appstoreserverlibrary.models.UpdateAppAccountTokenRequest import UpdateAppAccountTokenRequest

from entitle.client_input import ascii_int
from entitle.pacing import Clock, Pacer, PacerStats, Sleep, retry_delay
from entitle.providers.appstore.errors import AppStoreApiUnavailable
from entitle.providers.appstore.keys import in_app_purchase_key
from entitle.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# Apple's own answer when it does not know a transaction id (errorCode 4040010).
TRANSACTION_NOT_FOUND = 4040010

# The endpoints we call, named as the pacer counts them (method and path template).
GET_ALL_SUBSCRIPTION_STATUSES = "GET /inApps/v1/subscriptions/{transactionId}"
SET_APP_ACCOUNT_TOKEN = "PUT /inApps/v1/transactions/{originalTransactionId}/appAccountToken"
GET_NOTIFICATION_HISTORY = "POST /inApps/v1/notifications/history"
GET_TRANSACTION_INFO = "GET /inApps/v1/transactions/{transactionId}"
# Send Consumption Information: the current version (v2) of the endpoint; v1 is deprecated by Apple and
# by its library, and v2's consumptionPercentage is what entitle knows (how much of the credit is spent).
SEND_CONSUMPTION_INFORMATION = "PUT /inApps/v2/transactions/consumption/{transactionId}"
# Apple's limits per app and endpoint, requests per second in Production; the sandbox allows 10% of
# them. Apple counts them over an hour, so pacing at the per-second rate is on the safe side
# (https://developer.apple.com/documentation/appstoreserverapi/identifying-rate-limits).
PRODUCTION_LIMITS = {
    GET_ALL_SUBSCRIPTION_STATUSES: 50.0,
    SET_APP_ACCOUNT_TOKEN: 20.0,
    GET_NOTIFICATION_HISTORY: 50.0,
    GET_TRANSACTION_INFO: 50.0,
    SEND_CONSUMPTION_INFORMATION: 50.0,
}
SANDBOX_SHARE = 0.10
# A 429 is retried after 0.25 s, doubling up to 2 s (with jitter), for about 20 s in all.
RATE_LIMIT_BACKOFF_SECONDS = 0.25
RATE_LIMIT_BACKOFF_CAP_SECONDS = 2.0
RATE_LIMIT_BUDGET_SECONDS = 20.0


def endpoint_name(environment: str | AppleEnvironment, endpoint: str) -> str:
    """The pacer's name for `endpoint` in `environment`: the two environments are limited apart."""
    return f"{AppleEnvironment(environment).value} {endpoint}"


def appstore_limits() -> dict[str, float]:
    limits = {endpoint_name(AppleEnvironment.PRODUCTION, e): rate for e, rate in PRODUCTION_LIMITS.items()}
    for endpoint, rate in PRODUCTION_LIMITS.items():
        limits[endpoint_name(AppleEnvironment.SANDBOX, endpoint)] = rate * SANDBOX_SHARE
    return limits


class AppStoreRateLimited(APIException):
    """Apple's 429, with the moment its `Retry-After` header names (UNIX time in milliseconds), if any."""

    def __init__(self, raw_api_error: int | None, error_message: str | None, retry_at_ms: int | None) -> None:
        # attrs' mypy plugin reads APIException's fields as its __init__; the class defines its own.
        super().__init__(429, raw_api_error, error_message)  # type: ignore[call-arg]
        self.retry_at_ms = retry_at_ms

    def retry_after(self, now: float) -> float | None:
        """Seconds from `now` (UNIX time) until Apple takes requests again, if it said."""
        return None if self.retry_at_ms is None else max(0.0, self.retry_at_ms / 1000 - now)


class _PooledClient(AsyncAppStoreServerAPIClient):
    """Apple's client, sending through an injected httpx client to an overridable base URL."""

    def __init__(
        self, *, http: httpx.AsyncClient, base_url: str | None, environment: AppleEnvironment, **kwargs: Any
    ) -> None:
        super().__init__(environment=environment, **kwargs)
        self.environment = environment
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

    def _parse_response(
        self,
        status_code: int,
        headers: MutableMapping[str, str],
        json_supplier: Callable[[], Any],
        destination_class: type[T],
    ) -> T:
        try:
            return super()._parse_response(status_code, headers, json_supplier, destination_class)
        except APIException as exc:
            if status_code != 429:
                raise
            retry_at = headers.get("retry-after", "")
            raise AppStoreRateLimited(exc.raw_api_error, exc.error_message, ascii_int(retry_at)) from None

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
        rate_limit_budget: float = RATE_LIMIT_BUDGET_SECONDS,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
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
        self._rate_limit_budget = rate_limit_budget
        self._sleep = sleep
        self.pacer = Pacer(
            per_second=None, per_endpoint=None, endpoint_limits=appstore_limits(), clock=clock, sleep=sleep
        )

    @property
    def stats(self) -> PacerStats:
        """Requests sent and 429s received, per environment and endpoint."""
        return self.pacer.stats

    @property
    def rate_limited(self) -> int:
        """How many times Apple asked us to slow down; `entitle sync appstore` reports it."""
        return self.stats.total_rate_limited

    @classmethod
    def from_settings(cls, settings: Settings, http: httpx.AsyncClient) -> AppStoreApi | None:
        """None when the Server API credentials are not configured (the API is optional)."""
        key = in_app_purchase_key(settings, needed_for="use the App Store Server API")
        if key is None:
            return None
        return cls(
            signing_key=key.signing_key,
            key_id=key.key_id,
            issuer_id=key.issuer_id,
            bundle_id=key.bundle_id,
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

    async def _call(
        self, what: str, environment: AppleEnvironment, endpoint: str, call: Callable[[], Awaitable[T]]
    ) -> T:
        name = endpoint_name(environment, endpoint)
        failures = 0
        rate_limits = 0
        backed_off = 0.0
        while True:
            await self.pacer.acquire(name)
            try:
                return await call()
            except AppStoreRateLimited as exc:
                delay = exc.retry_after(time.time())
                if delay is None:
                    delay = retry_delay(
                        rate_limits, base=RATE_LIMIT_BACKOFF_SECONDS, cap=RATE_LIMIT_BACKOFF_CAP_SECONDS
                    )
                rate_limits += 1
                # The retry waits in the pacer, behind this hold, with every other caller.
                self.pacer.back_off(name, delay)
                backed_off += delay
                if backed_off > self._rate_limit_budget:
                    raise AppStoreApiUnavailable(
                        f"The App Store Server API refused {what} (HTTP 429, error {exc.raw_api_error})."
                    ) from exc
                log.info("App Store Server API: rate-limited on %s; retrying in %.2fs", what, delay)
                continue
            except APIException as exc:
                failures += 1
                if exc.http_status_code < 500 or failures == self._max_attempts:
                    raise AppStoreApiUnavailable(
                        f"The App Store Server API refused {what} (HTTP {exc.http_status_code}, "
                        f"error {exc.raw_api_error})."
                    ) from exc
            except httpx.HTTPError as exc:
                failures += 1
                if failures == self._max_attempts:
                    raise AppStoreApiUnavailable(f"The App Store Server API did not answer {what}.") from exc
            delay = retry_delay(failures - 1, base=self._backoff, cap=math.inf)
            log.info("App Store Server API: retrying %s in %.2fs (attempt %d)", what, delay, failures)
            await self._sleep(delay)

    async def subscription_statuses(
        self, environment: str, transaction_id: str
    ) -> list[LastTransactionsItem]:
        """Every subscription of the customer who made `transaction_id` (Get All Subscription Statuses)."""
        client = self._client(environment)
        response = await self._call(
            "Get All Subscription Statuses",
            client.environment,
            GET_ALL_SUBSCRIPTION_STATUSES,
            lambda: client.get_all_subscription_statuses(transaction_id),
        )
        return [item for group in response.data or [] for item in group.lastTransactions or []]

    async def set_app_account_token(
        self, environment: str, original_transaction_id: str, token: uuid.UUID
    ) -> None:
        client = self._client(environment)
        request = UpdateAppAccountTokenRequest(appAccountToken=str(token))
        await self._call(
            "Set App Account Token",
            client.environment,
            SET_APP_ACCOUNT_TOKEN,
            lambda: client.set_app_account_token(original_transaction_id, request),
        )

    async def transaction_info(self, environment: str, transaction_id: str) -> str | None:
        """The transaction's current signed form (Get Transaction Info): refunds show as a revocationDate."""
        client = self._client(environment)
        response = await self._call(
            "Get Transaction Info",
            client.environment,
            GET_TRANSACTION_INFO,
            lambda: client.get_transaction_info(transaction_id),
        )
        return response.signedTransactionInfo

    async def send_consumption_information(
        self, environment: str, transaction_id: str, request: ConsumptionRequest
    ) -> None:
        """Answer a CONSUMPTION_REQUEST (Send Consumption Information), within Apple's 12 hours."""
        client = self._client(environment)
        await self._call(
            "Send Consumption Information",
            client.environment,
            SEND_CONSUMPTION_INFORMATION,
            lambda: client.send_consumption_information(transaction_id, request),
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
                client.environment,
                GET_NOTIFICATION_HISTORY,
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
