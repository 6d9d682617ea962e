"""`entitle doctor --create-stripe-webhook` registers one Stripe endpoint per URL, however often it runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entitle.cli.doctor import Report, _check_apple
from entitle.context import AppContext
from entitle.core.catalog import packaged_catalog_text
from entitle.providers.stripe.client import StripeGateway
from entitle.providers.stripe.webhook_endpoints import ensure_webhook_endpoint
from entitle.settings import Settings
from tests.providers.stripe.conftest import stripe_settings
from tests.standins.stripe import StripeStandin

URL = "https://billing.example.com/webhooks/stripe"


@pytest.fixture
def standin() -> Iterator[StripeStandin]:
    with StripeStandin() as running:
        yield running


async def test_a_second_run_reuses_the_endpoint_and_updates_its_events(
    standin: StripeStandin, settings: Settings
) -> None:
    gateway = StripeGateway.from_settings(settings.model_copy(update=_settings(standin)))
    try:
        first = await ensure_webhook_endpoint(gateway, url=URL, events=["customer.subscription.updated"])
        assert first.action == "created" and str(first.secret).startswith("whsec_")
        # The doctor's secret lives in the environment: even unrecognised, the endpoint is kept.
        again = await ensure_webhook_endpoint(
            gateway, url=URL, events=["customer.subscription.updated", "invoice.paid"], recreate_unknown=False
        )
        assert again.action == "reused" and again.endpoint_id == first.endpoint_id and again.secret is None
        [endpoint] = await gateway.list_webhook_endpoints()
        assert endpoint["enabled_events"] == ["customer.subscription.updated", "invoice.paid"]
        other = await ensure_webhook_endpoint(gateway, url=URL + "/other", events=["invoice.paid"])
        assert other.action == "created" and len(await gateway.list_webhook_endpoints()) == 2
    finally:
        await gateway.aclose()


def _settings(standin: StripeStandin) -> dict[str, object]:
    values = stripe_settings(standin)
    return {
        "stripe_secret_key": Settings(stripe_secret_key=values["stripe_secret_key"]).stripe_secret_key,
        "stripe_api_base": values["stripe_api_base"],
    }


@pytest.fixture
def offers_catalog(tmp_path: Path, settings_overrides: dict[str, Any]) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(
        packaged_catalog_text()
        + '\n[offers.winback]\nproduct = "pro_monthly"\n'
        + 'app_store_offer_id = "winback3"\neligible = "lapsed"\n'
    )
    settings_overrides["catalog"] = path


async def test_offers_without_the_in_app_purchase_key_are_a_warning(
    offers_catalog: None, context: AppContext
) -> None:
    report = Report()
    _check_apple(context, report)
    [(_, status, detail)] = [row for row in report.rows if row[0] == "promotional offers"]
    assert "warning" in status
    assert "the catalog has 1 but no In-App Purchase key signs them" in detail
