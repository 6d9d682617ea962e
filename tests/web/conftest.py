"""Fixtures the HTTP tests share: a running Stripe stand-in and the catalog pushed to it.

A module that sells through Stripe asks for `standin` and sets `settings_overrides` from it
(`stripe_settings(standin)`); `pushed` creates the catalog's products and prices at the stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from entitle.context import AppContext
from entitle.providers.stripe.catalog_push import push_catalog
from tests.standins.stripe import StripeStandin


@pytest.fixture
def standin() -> Iterator[StripeStandin]:
    with StripeStandin() as running:
        yield running


@pytest.fixture
async def pushed(context: AppContext) -> None:
    await push_catalog(context.providers["stripe"].gateway, context.catalog)
