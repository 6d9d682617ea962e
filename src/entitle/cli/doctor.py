"""`entitle doctor`: check the configuration and print what to register with Stripe and Apple."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import text

from entitle.cli import app
from entitle.cli.common import apply_saved_settings, console, fail, load_context, load_settings
from entitle.context import AppContext
from entitle.db.migrate import is_up_to_date
from entitle.errors import EntitleError
from entitle.services.setup.cards import Card
from entitle.services.setup.checklist import checklist
from entitle.services.setup.page_cards import PAGE_CARDS

# How a card's state reads in a terminal, as the page's badge says it.
STATES = {
    "not_set": "[yellow]not set[/]",
    "set": "[green]set[/]",
    "verified": "[green]verified[/]",
    "failing": "[red]failing[/]",
}


@dataclass
class Report:
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    # /admin/setup's cards, printed as the page shows them; a failing one fails the doctor.
    cards: list[Card] = field(default_factory=list)

    def ok(self, area: str, detail: str) -> None:
        self.rows.append((area, "[green]ok[/]", detail))

    def warn(self, area: str, detail: str) -> None:
        self.rows.append((area, "[yellow]warning[/]", detail))

    def problem(self, area: str, detail: str) -> None:
        self.rows.append((area, "[red]problem[/]", detail))

    @property
    def has_problems(self) -> bool:
        return any("problem" in status for _, status, _ in self.rows) or any(
            card.state == "failing" for card in self.cards
        )


@app.command()
def doctor(
    create_stripe_webhook: bool = typer.Option(
        False, help="Create the Stripe webhook endpoint through the API and print its signing secret."
    ),
) -> None:
    """Check the configuration, the database and the stores; print the webhook URLs to register."""
    settings = load_settings()
    context = load_context(settings)
    report = Report()

    async def _main() -> None:
        try:
            await apply_saved_settings(context)
            await _check_database(context, report)
            _check_core(context, report)
            await _check_stripe(context, report, create_webhook=create_stripe_webhook)
            _check_apple(context, report)
            _check_accounts(context, report)
            await _check_production(context, report)
            await _check_setup_cards(context, report)
        finally:
            await context.aclose()

    asyncio.run(_main())
    table = Table("area", "status", "detail", title="entitle doctor", show_lines=False)
    for row in report.rows:
        table.add_row(*row)
    console.print(table)
    if report.cards:
        console.print("\nSet-up, as /admin/setup shows it:")
    for card in report.cards:
        # The sentence is the vendor's own words: printed as text, never read as markup.
        console.print(
            f"  {escape(card.title)}: {STATES[card.state]}: {escape(card.sentence)}",
            soft_wrap=True,
            highlight=False,
        )
    public = settings.public_url
    console.print("\nRegister these URLs:")
    console.print(f"  Stripe webhook endpoint:                 {public}/webhooks/stripe", soft_wrap=True)
    console.print(f"  App Store Server Notifications V2:       {public}/webhooks/appstore", soft_wrap=True)
    console.print(
        f"  Sign in with Apple server notifications: {public}/webhooks/apple/signin", soft_wrap=True
    )
    try:
        from entitle.providers.stripe.handlers import webhook_event_types

        console.print("  Stripe events to send: " + ", ".join(webhook_event_types()), soft_wrap=True)
    except ImportError:  # the Stripe provider is optional in a slimmed install
        pass
    if report.has_problems:
        fail("some checks failed (see above)")


async def _check_production(context: AppContext, report: Report) -> None:
    """The production-ready checklist, as /admin/setup shows it; an item not ok is a warning, since a
    development install is rightly not production-ready."""
    try:
        async with context.database.sessionmaker() as db:
            items = await checklist(db, context.settings)
    except Exception as exc:  # the database check above already said what is wrong
        report.warn("production checklist", f"could not be read: {exc.__class__.__name__}")
        return
    for item in items:
        area = f"ready: {item.title.lower()}"
        if item.ok:
            report.ok(area, item.sentence)
        else:
            report.warn(area, f"{item.sentence} See {item.docs}")


async def _check_setup_cards(context: AppContext, report: Report) -> None:
    """Each card of /admin/setup, from the same `card()` the page calls: not set, set, verified, or failing
    with the vendor's reason."""
    for key, source in PAGE_CARDS.items():
        try:
            async with context.database.sessionmaker() as db:
                report.cards.append(await source(db, context))
        except Exception as exc:  # one card that cannot be read must not hide the others
            report.warn(f"set-up: {key}", f"could not be read: {exc.__class__.__name__}")


def _check_accounts(context: AppContext, report: Report) -> None:
    settings = context.settings
    if settings.smtp_url is not None:
        report.ok("mail", f"SMTP configured; mails from {settings.email_from}")
    else:
        report.warn("mail", "ENTITLE_SMTP_URL is not set: mails are written to the log (development only)")
    if context.accounts.apple_api is not None:
        report.ok("sign in with apple api", "authorization codes are exchanged; tokens revoked at deletion")
    elif settings.apple_signin_client_ids:
        report.warn(
            "sign in with apple api",
            "set ENTITLE_APPLE_SIGNIN_TEAM_ID, _KEY_ID and _PRIVATE_KEY_PATH so deleted accounts' "
            "Apple tokens can be revoked (App Review guideline 5.1.1(v))",
        )
    if context.accounts.external_auth is not None:
        report.ok("external sign-in", f"tokens from {settings.external_auth_issuer} are accepted")


async def _check_database(context: AppContext, report: Report) -> None:
    try:
        async with context.database.sessionmaker() as db:
            await db.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error: report it, do not crash the doctor
        report.problem("database", f"{context.database.dialect} did not answer: {exc.__class__.__name__}")
        return
    if await is_up_to_date(context.database):
        report.ok("database", f"{context.database.dialect}, migrations up to date")
    else:
        report.problem("database", "pending migrations: run `entitle migrate`")


def _check_core(context: AppContext, report: Report) -> None:
    settings = context.settings
    catalog = context.catalog
    report.ok("catalog", f"{len(catalog.entitlements)} entitlement(s), {len(catalog.products)} product(s)")
    report.ok("environment", settings.environment.value)
    if settings.admin_api_key is None:
        report.warn("server key", "ENTITLE_ADMIN_API_KEY is not set: the server-key API is off")
    else:
        report.ok("server key", "set")
    if settings.public_url.startswith("http://") and not settings.is_development:
        report.problem("public url", "ENTITLE_PUBLIC_URL must be https in production")
    if settings.alert_webhook_url:
        report.ok("alerts", "sent to ENTITLE_ALERT_WEBHOOK_URL")
    else:
        report.warn("alerts", "ENTITLE_ALERT_WEBHOOK_URL is not set: alerts are only logged")
    if settings.redis_url:
        report.ok("redis", "rate limits shared through Redis")
    else:
        report.warn("redis", "rate limits are per process (set ENTITLE_REDIS_URL when running several)")
    for client_ids, label in (
        (settings.apple_signin_client_ids, "Sign in with Apple"),
        (settings.google_client_ids, "Google sign-in"),
    ):
        if client_ids:
            report.ok(label, "client ids: " + ", ".join(client_ids))
        else:
            report.warn(label, "not configured (no client ids): sign-in with it is refused")


async def _check_stripe(context: AppContext, report: Report, *, create_webhook: bool) -> None:
    settings = context.settings
    if settings.stripe_secret_key is None:
        report.warn("stripe", "ENTITLE_STRIPE_SECRET_KEY is not set: web payments are off")
        return
    if not settings.stripe_webhook_secret:
        report.problem("stripe", "ENTITLE_STRIPE_WEBHOOK_SECRET is not set: webhooks will be refused")
    from entitle.providers.stripe.client import StripeGateway
    from entitle.providers.stripe.handlers import webhook_event_types
    from entitle.providers.stripe.webhook_endpoints import ensure_webhook_endpoint

    gateway = StripeGateway.from_settings(settings)
    try:
        lookup_keys = [p.stripe.lookup_key for p in context.catalog.products.values() if p.stripe is not None]
        prices = await gateway.prices_by_lookup_keys(lookup_keys)
        found = {price.get("lookup_key") for price in prices}
        missing = [key for key in lookup_keys if key not in found]
        if missing:
            report.problem(
                "stripe prices", f"missing at Stripe: {', '.join(missing)} (run `entitle catalog push`)"
            )
        else:
            report.ok("stripe", f"key works; {len(found)} catalog price(s) found by lookup key")
        if create_webhook:
            endpoint = await ensure_webhook_endpoint(
                gateway,
                url=f"{settings.public_url}/webhooks/stripe",
                events=webhook_event_types(),
                known_secrets=[s.get_secret_value() for s in settings.stripe_webhook_secret],
                # The secret lives in the environment the operator edits: an endpoint already there
                # keeps its secret rather than being replaced by one the running server lacks.
                recreate_unknown=False,
            )
            if endpoint.secret is not None:
                report.ok("stripe webhook", f"created {endpoint.endpoint_id}; secret: {endpoint.secret}")
            else:
                # Stripe shows a secret only at creation: the one set in ENTITLE_STRIPE_WEBHOOK_SECRET stays.
                report.ok(
                    "stripe webhook",
                    f"{endpoint.endpoint_id} already points here; its events are updated and its signing "
                    "secret is unchanged (Stripe Dashboard > Webhooks shows it)",
                )
    except EntitleError as exc:
        report.problem("stripe", exc.message)
    finally:
        await gateway.aclose()


def _check_apple(context: AppContext, report: Report) -> None:
    from entitle.providers.appstore.verification import configuration_problems

    settings = context.settings
    problems = configuration_problems(settings)
    if not settings.apple_bundle_id:
        report.warn("app store", "ENTITLE_APPLE_BUNDLE_ID is not set: App Store purchases are off")
    else:
        for problem in problems:
            report.problem("app store", problem)
        if not problems:
            report.ok("app store", f"bundle {settings.apple_bundle_id}, app id {settings.apple_app_id}")
    pasted_or_file = settings.apple_private_key_path or settings.apple_private_key
    has_key = bool(settings.apple_issuer_id and settings.apple_key_id and pasted_or_file)
    if has_key:
        report.ok("app store api", "credentials configured (refresh and sync enabled)")
    else:
        report.warn("app store api", "no App Store Server API credentials: no refresh on purchase, no sync")
    offers = len(context.catalog.offers)
    if offers and has_key:
        report.ok("promotional offers", f"{offers} in the catalog, signed with key {settings.apple_key_id}")
    elif offers:
        report.warn(
            "promotional offers",
            f"the catalog has {offers} but no In-App Purchase key signs them: set ENTITLE_APPLE_KEY_ID, "
            "ENTITLE_APPLE_ISSUER_ID and ENTITLE_APPLE_PRIVATE_KEY_PATH",
        )
