"""`entitle doctor --create-stripe-webhook` registers one Stripe endpoint per URL, however often it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from entitle.cli import app
from entitle.cli.doctor import Report, _check_apple
from entitle.context import AppContext
from entitle.core.catalog import packaged_catalog_text
from entitle.providers.stripe.client import StripeGateway
from entitle.providers.stripe.webhook_endpoints import ensure_webhook_endpoint
from entitle.settings import Settings
from tests.cli.test_grant import env  # noqa: F401  (the fixture: the command's environment)
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


# --- /admin/setup's cards, as `entitle doctor` prints them -------------------------------------------------
def _setup_lines(output: str) -> dict[str, str]:
    """The doctor's set-up section: each card's title to the rest of its line (state: sentence)."""
    section = output.split("Set-up, as /admin/setup shows it:\n", 1)[1].split("\n\n", 1)[0]
    return dict(line.strip().split(": ", 1) for line in section.splitlines())


def test_the_doctor_prints_every_card_of_the_setup_page(env: str) -> None:  # noqa: F811
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = _setup_lines(result.output)
    assert list(lines) == [
        "Stripe",
        "App Store",
        "Sign in with Apple",
        "Google sign-in",
        "Mail",
        "Outbound webhooks",
        "Alerts",
    ]
    assert lines["Stripe"].startswith("not set: Paste the secret and publishable keys")
    assert lines["Mail"].startswith("not set: Give an SMTP server")


def test_a_failing_card_fails_the_doctor_with_the_vendors_reason(
    env: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with StripeStandin() as stripe:
        # Keys Stripe takes and the catalog pushed, so the only thing wrong is what the Stripe card sees:
        # no webhook endpoint at Stripe sends events here.
        monkeypatch.setenv("ENTITLE_STRIPE_SECRET_KEY", stripe.secret_key)
        monkeypatch.setenv("ENTITLE_STRIPE_API_BASE", stripe.base_url)
        monkeypatch.setenv("ENTITLE_STRIPE_WEBHOOK_SECRET", stripe.webhook_secret)
        pushed = CliRunner().invoke(app, ["catalog", "push"])
        assert pushed.exit_code == 0, pushed.output
        result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    assert "problem" not in result.output
    assert _setup_lines(result.output)["Stripe"] == (
        "failing: Test mode: Stripe has no enabled webhook endpoint for "
        "http://127.0.0.1:8000/webhooks/stripe. Connect it again."
    )
    assert "some checks failed" in result.output


def test_a_verified_card_is_printed_as_verified(
    env: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with StripeStandin() as stripe:
        monkeypatch.setenv("ENTITLE_STRIPE_SECRET_KEY", stripe.secret_key)
        monkeypatch.setenv("ENTITLE_STRIPE_PUBLISHABLE_KEY", "pk_test_" + "p" * 24)
        monkeypatch.setenv("ENTITLE_STRIPE_API_BASE", stripe.base_url)
        assert CliRunner().invoke(app, ["catalog", "push"]).exit_code == 0
        secret = asyncio.run(_connect(stripe))
        monkeypatch.setenv("ENTITLE_STRIPE_WEBHOOK_SECRET", secret)
        result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert _setup_lines(result.output)["Stripe"] == (
        "verified: Test mode: keys and webhook endpoint work; no event received yet: send a test event."
    )


async def _connect(stripe: StripeStandin) -> str:
    """The webhook endpoint at Stripe for this server, as the page's Connect makes it; its secret."""
    from entitle.providers.stripe.handlers import webhook_event_types

    gateway = StripeGateway.from_settings(Settings(**_settings(stripe)))  # type: ignore[arg-type]
    try:
        endpoint = await ensure_webhook_endpoint(
            gateway, url="http://127.0.0.1:8000/webhooks/stripe", events=webhook_event_types()
        )
    finally:
        await gateway.aclose()
    assert endpoint.secret is not None
    return endpoint.secret
