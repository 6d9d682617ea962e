"""Opt-in: the gateway against real Stripe test mode (`-m stripe_live` with STRIPE_TEST_SECRET_KEY set)."""

from __future__ import annotations

import os
import uuid

import pytest

from entitle.providers.stripe.client import StripeGateway

pytestmark = [
    pytest.mark.stripe_live,
    pytest.mark.skipif(
        not os.environ.get("STRIPE_TEST_SECRET_KEY", "").startswith("sk_test_"),
        reason="needs STRIPE_TEST_SECRET_KEY (a test-mode key)",
    ),
]


async def test_customers_and_prices_in_test_mode() -> None:
    gateway = StripeGateway(os.environ["STRIPE_TEST_SECRET_KEY"])
    try:
        account_id = str(uuid.uuid4())
        customer = await gateway.create_customer(
            account_id=account_id, email=None, idempotency_key=account_id
        )
        assert customer["metadata"]["account_id"] == account_id and customer["livemode"] is False
        assert (await gateway.retrieve_customer(customer["id"]))["id"] == customer["id"]
        await gateway.prices_by_lookup_keys(["entitle_live_test_nothing"])
    finally:
        await gateway.aclose()
