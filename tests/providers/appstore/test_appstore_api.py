"""The Server API client against the stand-in: paced under Apple's limits, 429s retried within seconds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from entitle.providers.appstore.api import (
    GET_ALL_SUBSCRIPTION_STATUSES,
    PRODUCTION_LIMITS,
    AppStoreApi,
    endpoint_name,
)
from tests.providers.appstore.constants import BUNDLE_ID
from tests.standins.appstore import STATUS_ACTIVE, AppStoreSigner
from tests.standins.appstore.fixtures import StandIn, purchase
from tests.standins.limits import VendorLimits

STATUSES = "GET /inApps/v1/subscriptions/{transactionId}"  # as the stand-in names it


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def make_api(standin: StandIn, http: httpx.AsyncClient, sleeps: list[float] | None = None) -> AppStoreApi:
    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)
        await asyncio.sleep(seconds if sleeps is None else 0)

    return AppStoreApi(
        signing_key=standin.key_path.read_bytes(),
        key_id=standin.state.key_id,
        issuer_id=standin.state.issuer_id,
        bundle_id=BUNDLE_ID,
        http=http,
        base_url=standin.url,
        sleep=sleep,
    )


def _subscribed(standin: StandIn, signer: AppStoreSigner, original: str) -> None:
    bought = purchase(signer, original=original, token=None)
    renewal = signer.renewal_info(
        original_transaction_id=original, product_id=bought["productId"], signed_date=bought["signedDate"]
    )
    standin.state.put_subscription(STATUS_ACTIVE, bought, renewal)


async def test_concurrent_reads_stay_under_apples_limit(
    appstore_api: StandIn, appstore_signer: AppStoreSigner, http: httpx.AsyncClient
) -> None:
    limit = PRODUCTION_LIMITS[GET_ALL_SUBSCRIPTION_STATUSES]
    appstore_api.state.limits = VendorLimits(latency_ms=20, jitter_ms=5, endpoint_limits={STATUSES: limit})
    _subscribed(appstore_api, appstore_signer, "700")
    api = make_api(appstore_api, http)
    answers = await asyncio.gather(*(api.subscription_statuses("Production", "700") for _ in range(60)))
    assert all(item.originalTransactionId == "700" for items in answers for item in items)
    assert appstore_api.state.limits.stats.requests[STATUSES] == 60
    assert appstore_api.state.limits.stats.total_rate_limited == 0 and api.rate_limited == 0
    assert api.stats.requests == {endpoint_name("Production", GET_ALL_SUBSCRIPTION_STATUSES): 60}
    await api.aclose()


async def test_a_429_is_retried_within_seconds(
    appstore_api: StandIn, appstore_signer: AppStoreSigner, http: httpx.AsyncClient
) -> None:
    _subscribed(appstore_api, appstore_signer, "701")
    sleeps: list[float] = []
    api = make_api(appstore_api, http, sleeps)
    appstore_api.state.rate_limit_next = 3
    (item,) = await api.subscription_statuses("Sandbox", "701")
    assert item.originalTransactionId == "701"
    assert len(sleeps) == 3 and max(sleeps) < 3
    assert api.rate_limited == 3 == appstore_api.state.limits.stats.rate_limited[STATUSES]
    await api.aclose()


async def test_apples_retry_after_is_honored(
    appstore_api: StandIn, appstore_signer: AppStoreSigner, http: httpx.AsyncClient
) -> None:
    # Apple allows this endpoint one request a second; the client thinks 50: the second call is refused,
    # told when to come back (UNIX milliseconds), waits that long, and gets through.
    appstore_api.state.limits = VendorLimits(endpoint_limits={STATUSES: 1})
    _subscribed(appstore_api, appstore_signer, "702")
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)

    api = make_api(appstore_api, http)
    api.pacer._sleep = sleep
    await api.subscription_statuses("Production", "702")
    await api.subscription_statuses("Production", "702")
    assert api.rate_limited == 1 and 0.5 < max(waits) <= 1.1
    await api.aclose()
