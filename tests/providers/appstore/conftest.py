"""Fixtures for App Store tests: a minted signing chain, a signer for our test app, and a verifier."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from appstoreserverlibrary.models.Environment import Environment as AppleEnvironment

from entitle.core.catalog import Catalog, load_catalog
from entitle.providers.appstore.verification import AppStoreVerifier
from tests.providers.appstore.constants import APP_APPLE_ID, BUNDLE_ID
from tests.standins.appstore import AppStoreSigner, SigningChain
from tests.standins.appstore import fixtures as appstore_fixtures
from tests.standins.appstore.fixtures import appstore_settings

# The shared App Store fixtures, registered for every test in this folder.
appstore_chain = appstore_fixtures.appstore_chain
appstore_root_path = appstore_fixtures.appstore_root_path
appstore_signer = appstore_fixtures.appstore_signer
appstore_api = appstore_fixtures.appstore_api


@pytest.fixture(scope="session")
def chain(appstore_chain: SigningChain) -> SigningChain:
    return appstore_chain


@pytest.fixture
def signer(chain: SigningChain) -> AppStoreSigner:
    return AppStoreSigner(chain, bundle_id=BUNDLE_ID, app_apple_id=APP_APPLE_ID, environment="Sandbox")


@pytest.fixture
def production_signer(chain: SigningChain) -> AppStoreSigner:
    return AppStoreSigner(chain, bundle_id=BUNDLE_ID, app_apple_id=APP_APPLE_ID, environment="Production")


@pytest.fixture
def verifier(chain: SigningChain) -> AppStoreVerifier:
    return AppStoreVerifier(
        bundle_id=BUNDLE_ID,
        app_apple_id=APP_APPLE_ID,
        root_certificates=[chain.root_der],
        # Our minted chain has no OCSP responder; production keeps these on.
        online_checks=False,
        environments=(AppleEnvironment.PRODUCTION, AppleEnvironment.SANDBOX),
    )


@pytest.fixture
def settings_overrides(appstore_root_path: Path) -> dict[str, Any]:
    """Every App Store test trusts the minted chain."""
    return appstore_settings(appstore_root_path)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
