"""The AppContext: everything a request or a job needs that is built once per process, and where the
app is assembled: `build_context` makes each long-lived piece and hands each provider exactly the
pieces it needs (its settings slice, the catalog, its vendor client, the subscription sink).

The provider registry (`build_providers`) is the one place that knows which stores exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from entitle.core.catalog import Catalog, load_catalog
from entitle.db.engine import Database
from entitle.identity.apple import AppleIdentityVerifier
from entitle.identity.build import build_identity_verifiers
from entitle.providers.appstore.api import AppStoreApi
from entitle.providers.appstore.offers import PromotionalOfferSigner
from entitle.providers.appstore.provider import AppStoreConfig, AppStoreProvider
from entitle.providers.appstore.verification import AppStoreVerifier
from entitle.providers.base import Provider
from entitle.providers.stripe.client import StripeGateway
from entitle.providers.stripe.provider import StripeConfig, StripeProvider
from entitle.services.access.entitlements import bind_entitlement_rules
from entitle.services.access.purchases import StoredPurchases
from entitle.services.access.subscriptions import StoredSubscriptions
from entitle.services.billing.billing_stripe import cancel_for_deleted_account
from entitle.services.billing.guest_checkout import StoredGuestCheckouts
from entitle.services.billing.trial_cards import mail_trial_ending_without_card
from entitle.services.delivery.changes import ChangeBus
from entitle.services.delivery.pipeline import DEFAULT_CONCURRENCY, EventPipeline
from entitle.services.identity.account_setup import AccountServices, build_account_services
from entitle.services.identity.accounts import DeletionHook
from entitle.services.identity.apple_signin import AppleSigninNotifications
from entitle.services.identity.apple_tokens import revoke_on_deletion
from entitle.services.identity.ratelimit import SignInRateLimiter
from entitle.services.identity.tokens import SigningKey, TokenIssuer
from entitle.settings import Settings

log = logging.getLogger(__name__)

# How long replaced providers stay open after settings changed: requests that picked them up finish first.
RETIRE_AFTER_SECONDS = 60.0


@dataclass
class AppContext:
    settings: Settings
    database: Database
    catalog: Catalog
    tokens: TokenIssuer
    rate_limiter: SignInRateLimiter
    # One pooled HTTP client for outbound calls (JWKS, App Store API); closed on shutdown.
    http: httpx.AsyncClient
    # Answer changes and inbox wake-ups, across processes.
    bus: ChangeBus
    # Provider webhooks in, processing off the request.
    pipeline: EventPipeline
    # Mail, encryption at rest, Sign in with Apple's API, external sign-in (services.identity.account_setup).
    accounts: AccountServices
    # Providers by name ("stripe", "app_store", "apple_signin"), see `build_providers`.
    providers: dict[str, Provider] = field(default_factory=dict)
    # Identity verifiers by provider name ("apple", "google"), see entitle.identity.
    identity_verifiers: dict[str, Any] = field(default_factory=dict)
    # Run by services.identity.accounts.delete_account before an account is erased
    # (e.g. cancel Stripe billing).
    account_deletion_hooks: list[DeletionHook] = field(default_factory=list)
    # What the environment (or the caller) gave, before saved settings were overlaid: `settings` is the
    # effective one (services.setup.runtime_settings). None: nothing saved was ever applied.
    environment_settings: Settings | None = None
    # The saved settings applied now, by name (secrets decrypted); compared to skip needless rebuilds.
    saved_settings: dict[str, str] = field(default_factory=dict)
    # One re-read of the saved settings at a time (services.setup.runtime_settings.reload_settings).
    settings_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _retired: list[Provider] = field(default_factory=list)
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)

    def apply_settings(self, settings: Settings) -> None:
        """Make `settings` the effective settings of this process: providers, identity verifiers and the
        mailer are rebuilt from it and swapped in place (the pipeline holds the providers dict), and the
        old providers are closed a little later. Raises ValueError (naming the setting) and leaves
        everything as it was when a piece cannot be built."""
        identity_verifiers = build_identity_verifiers(settings, self.http)
        deletion_hooks: list[DeletionHook] = [revoke_on_deletion]
        providers = build_providers(
            settings,
            database=self.database,
            catalog=self.catalog,
            http=self.http,
            apple_identity=identity_verifiers["apple"],
            deletion_hooks=deletion_hooks,
        )
        try:
            accounts = build_account_services(settings, self.http)
        except ValueError:
            self._retire(list(providers.values()))
            raise
        if self.environment_settings is None:
            self.environment_settings = self.settings
        old = list(self.providers.values())
        self.providers.clear()
        self.providers.update(providers)
        self.identity_verifiers.clear()
        self.identity_verifiers.update(identity_verifiers)
        self.account_deletion_hooks[:] = deletion_hooks
        self.accounts = accounts
        self.settings = settings
        self._retire(old)

    def _retire(self, providers: list[Provider]) -> None:
        self._retired.extend(providers)
        try:
            task = asyncio.get_running_loop().create_task(self._close_later(providers))
        except RuntimeError:  # no loop (a synchronous caller): closed with the context
            return
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _close_later(self, providers: list[Provider]) -> None:
        await asyncio.sleep(RETIRE_AFTER_SECONDS)
        for provider in providers:
            if provider in self._retired:
                self._retired.remove(provider)
                with contextlib.suppress(Exception):
                    await provider.aclose()

    async def aclose(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        await self.pipeline.aclose()
        for provider in [*self.providers.values(), *self._retired]:
            with contextlib.suppress(Exception):
                await provider.aclose()
        self._retired.clear()
        await self.bus.aclose()
        await self.http.aclose()
        await self.rate_limiter.close()
        await self.database.dispose()


def signing_key_for(settings: Settings) -> SigningKey:
    """The configured key; in development, a key generated on first start and kept beside the database."""
    if settings.jwt_private_key_path is not None:
        return SigningKey.load_or_create(settings.jwt_private_key_path, create=settings.is_development)
    return SigningKey.load_or_create(Path(".entitle") / "access-token-key.pem", create=True)


def build_providers(
    settings: Settings,
    *,
    database: Database,
    catalog: Catalog,
    http: httpx.AsyncClient,
    apple_identity: AppleIdentityVerifier,
    deletion_hooks: list[DeletionHook],
) -> dict[str, Provider]:
    """Every provider, from explicit pieces; adding a store is one entry here."""
    sink = StoredSubscriptions()
    stripe = StripeProvider(
        config=StripeConfig.from_settings(settings),
        catalog=catalog,
        sink=sink,
        gateway=partial(StripeGateway.from_settings, settings),
        purchases=StoredPurchases(),
        trial_ending_without_card=partial(mail_trial_ending_without_card, catalog=catalog),
        guests=StoredGuestCheckouts(catalog),
    )
    if stripe.configured:
        deletion_hooks.append(partial(cancel_for_deleted_account, stripe=stripe))
    app_store = AppStoreProvider(
        config=AppStoreConfig.from_settings(settings),
        database=database,
        catalog=catalog,
        sink=sink,
        verifier=AppStoreVerifier.from_settings(settings) if settings.apple_bundle_id else None,
        api=AppStoreApi.from_settings(settings, http),
        purchases=StoredPurchases(),
        offers=PromotionalOfferSigner.from_settings(settings),
    )
    apple_signin = AppleSigninNotifications(apple_identity, deletion_hooks)
    return {provider.name: provider for provider in (stripe, app_store, apple_signin)}


def build_context(
    settings: Settings,
    *,
    http: httpx.AsyncClient | None = None,
    signing_key: SigningKey | None = None,
    catalog: Catalog | None = None,
    process_locally: bool = True,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> AppContext:
    """Build every long-lived piece; raises CatalogError or ValueError on bad configuration.

    `process_locally=False` makes an API process that stores provider events and leaves processing to
    `entitle worker` processes; `concurrency` is how many ordering keys this process works on at once."""
    database = Database(settings.database_url)
    http = http or httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
    catalog = catalog or load_catalog(settings.catalog)
    bus = ChangeBus(database, redis_url=settings.redis_url, streams_per_account=settings.streams_per_account)
    # Sessions carry the catalog so providers can store subscriptions with nothing but a session.
    bind_entitlement_rules(database, catalog, settings.public_url)
    identity_verifiers = build_identity_verifiers(settings, http)
    # Apple requires its tokens revoked when an account is deleted in the app (guideline 5.1.1(v)).
    deletion_hooks: list[DeletionHook] = [revoke_on_deletion]
    providers = build_providers(
        settings,
        database=database,
        catalog=catalog,
        http=http,
        apple_identity=identity_verifiers["apple"],
        deletion_hooks=deletion_hooks,
    )
    return AppContext(
        settings=settings,
        database=database,
        catalog=catalog,
        tokens=TokenIssuer(
            signing_key or signing_key_for(settings),
            issuer=settings.jwt_issuer,
            access_ttl=timedelta(seconds=settings.access_token_ttl_seconds),
            refresh_ttl=timedelta(days=settings.refresh_token_ttl_days),
        ),
        rate_limiter=SignInRateLimiter(
            per_address=settings.rate_limit_per_address,
            per_ip=settings.rate_limit_per_ip,
            mail_per_address=settings.rate_limit_mail_per_address,
            redis_url=settings.redis_url,
        ),
        http=http,
        bus=bus,
        pipeline=EventPipeline(
            database, providers, bus=bus, process_locally=process_locally, concurrency=concurrency
        ),
        accounts=build_account_services(settings, http),
        providers=providers,
        identity_verifiers=identity_verifiers,
        account_deletion_hooks=deletion_hooks,
    )
