"""The production-ready checklist: each item ok or not, a sentence, and the docs section that fixes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.cli.doctor import Report, _check_production
from entitle.context import AppContext
from entitle.services.identity.operators import add_operator
from entitle.services.setup.checklist import Item, checklist, is_production_ready
from entitle.settings import RunEnvironment, Settings
from tests.factories import make_account

ROOT = Path(__file__).resolve().parents[3]


def by_key(items: list[Item]) -> dict[str, Item]:
    return {item.key: item for item in items}


def ready(settings: Settings, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "public_url": "https://billing.example.com",
        "admin_api_key": SecretStr("k" * 32),
        "encryption_key": SecretStr(Fernet.generate_key().decode()),
        "database_url": "postgresql+asyncpg://entitle@db/entitle",
        "backups_configured": True,
        "environment": RunEnvironment.PRODUCTION,
        "stripe_secret_key": SecretStr("sk_live_" + "a" * 24),
        "stripe_publishable_key": "pk_live_" + "b" * 24,
        "stripe_webhook_secret": [SecretStr("whsec_" + "c" * 24)],
        "smtp_url": SecretStr("smtps://u:p@mail.example.com:465"),
    }
    return settings.model_copy(update={**values, **changes})


async def two_operators(db: AsyncSession) -> None:
    for email in ("ops@example.com", "owner@example.com"):
        await make_account(db, email=email)
        await add_operator(db, email, added_by="test")
    await db.commit()


async def test_a_fresh_development_install_is_not_ready_and_says_why(
    db: AsyncSession, settings: Settings
) -> None:
    items = by_key(await checklist(db, settings.model_copy(update={"public_url": "http://127.0.0.1:8000"})))
    assert list(items) == [
        "public_url_https",
        "admin_key",
        "encryption_key",
        "postgresql",
        "backups",
        "stripe_live",
        "mail",
        "operators",
    ]
    assert (
        not items["public_url_https"].ok
        and "http://127.0.0.1:8000 is not https" in items["public_url_https"].sentence
    )
    assert not items["backups"].ok and items["backups"].docs == "docs/deploy.md#backups-and-restore"
    assert not items["operators"].ok and items["operators"].sentence.startswith("No operator")
    assert items["stripe_live"].ok  # no Stripe at all: nothing to be live
    assert not is_production_ready(list(items.values()))


async def test_everything_in_place_is_ready(db: AsyncSession, settings: Settings) -> None:
    await two_operators(db)
    items = await checklist(db, ready(settings))
    assert [item.key for item in items if not item.ok] == []
    assert is_production_ready(items)
    text = " ".join(item.sentence for item in items)
    assert "ENTITLE_" not in text and "sk_live_" not in text and "kkkk" not in text


async def test_stripe_keys_must_match_the_mode(db: AsyncSession, settings: Settings) -> None:
    test_keys = ready(settings, stripe_secret_key=SecretStr("sk_test_" + "a" * 24))
    item = by_key(await checklist(db, test_keys))["stripe_live"]
    assert not item.ok and "test keys" in item.sentence
    development = test_keys.model_copy(update={"environment": RunEnvironment.DEVELOPMENT})
    assert by_key(await checklist(db, development))["stripe_live"].ok
    mixed = ready(settings, stripe_publishable_key="pk_test_" + "b" * 24)
    item = by_key(await checklist(db, mixed))["stripe_live"]
    assert not item.ok and "publishable key is not" in item.sentence


async def test_placeholder_secrets_and_a_bad_encryption_key_are_not_ok(
    db: AsyncSession, settings: Settings
) -> None:
    items = by_key(
        await checklist(
            db, ready(settings, admin_api_key=SecretStr("changeme"), encryption_key=SecretStr("not-a-key"))
        )
    )
    assert not items["admin_key"].ok and not items["encryption_key"].ok
    assert "not a valid key" in items["encryption_key"].sentence


def test_every_docs_anchor_exists() -> None:
    from entitle.services.setup import checklist as module

    text = (ROOT / module.DOCS).read_text()
    anchors = {
        "-".join("".join(c for c in line[3:].strip().lower() if c.isalnum() or c in " -").split())
        for line in text.splitlines()
        if line.startswith("## ") or line.startswith("### ")
    }
    settings = Settings()
    items = [
        module._public_url(settings),
        module._admin_key(settings),
        module._encryption_key(settings),
        module._postgresql(settings),
        module._backups(settings),
        module._stripe_live(settings),
        module._mail(settings),
        module._operators(0),
    ]
    for item in items:
        assert item.docs.split("#")[1] in anchors, item.docs


async def test_the_doctor_shows_the_checklist(context: AppContext) -> None:
    report = Report()
    await _check_production(context, report)
    rows = {area: (status, detail) for area, status, detail in report.rows}
    status, detail = rows["ready: at least two operators"]
    assert "warning" in status and "docs/deploy.md#at-least-two-operators" in detail
    assert not report.has_problems
