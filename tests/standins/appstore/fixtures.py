"""Pytest fixtures for tests that run entitle against the App Store stand-ins (assign them in a conftest).

`appstore_settings` configures the app to trust the minted chain (online checks off: the test chain has
no OCSP responder); `appstore_api` additionally starts the Server API stand-in on a loopback port and
points `ENTITLE_APPLE_API_BASE` at it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .chain import SigningChain, mint_chain
from .server import AppStoreServerState, create_app, new_state, serve
from .signing import AppStoreSigner, ms

BUNDLE_ID = "com.example.app"
APP_APPLE_ID = 1234
MONTHLY = "com.example.app.pro.monthly"
YEARLY = "com.example.app.pro.yearly"


@pytest.fixture(scope="session")
def appstore_chain() -> SigningChain:
    return mint_chain()


@pytest.fixture(scope="session")
def appstore_root_path(appstore_chain: SigningChain, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("apple") / "test-root.pem"
    path.write_bytes(appstore_chain.root_pem)
    return path


@pytest.fixture
def appstore_signer(appstore_chain: SigningChain) -> AppStoreSigner:
    return AppStoreSigner(
        appstore_chain, bundle_id=BUNDLE_ID, app_apple_id=APP_APPLE_ID, environment="Sandbox"
    )


def appstore_settings(root_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "apple_bundle_id": BUNDLE_ID,
        "apple_app_id": APP_APPLE_ID,
        "apple_root_certs": str(root_path),
        "apple_online_checks": False,
        **extra,
    }


@dataclass
class StandIn:
    state: AppStoreServerState
    url: str
    key_path: Path

    def settings(self, root_path: Path, **extra: Any) -> dict[str, Any]:
        return appstore_settings(
            root_path,
            apple_issuer_id=self.state.issuer_id,
            apple_key_id=self.state.key_id,
            apple_private_key_path=str(self.key_path),
            apple_api_base=self.url,
            **extra,
        )


@pytest.fixture
def appstore_api(appstore_signer: AppStoreSigner, tmp_path: Path) -> Iterator[StandIn]:
    state, pem = new_state(appstore_signer)
    key_path = tmp_path / "AuthKey_test.p8"
    key_path.write_bytes(pem)
    with serve(create_app(state)) as url:
        yield StandIn(state=state, url=url, key_path=key_path)


def purchase(
    signer: AppStoreSigner,
    *,
    original: str,
    token: uuid.UUID | str | None,
    product: str = MONTHLY,
    now: dt.datetime | None = None,
    days: int = 30,
    signed_at: dt.datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A subscription transaction bought a day before `now` and running `days`."""
    now = now or dt.datetime.now(dt.UTC)
    bought = now - dt.timedelta(days=1)
    return signer.transaction(
        original_transaction_id=original,
        transaction_id=overrides.pop("transactionId", original),
        product_id=product,
        purchase_date=ms(bought),
        expires_date=ms(bought + dt.timedelta(days=days)),
        signed_date=ms(signed_at or bought),
        app_account_token=str(token) if token is not None else None,
        **overrides,
    )
