"""The AppContext: everything a request or a job needs that is built once per process.

Built by `create_app` (and by the CLI for commands that need it), closed on shutdown. Providers are
registered in `entitle.providers.build_providers`, the one place that knows which stores exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from entitle.core.catalog import Catalog, load_catalog
from entitle.db.engine import Database
from entitle.services.account_setup import AccountServices, build_account_services
from entitle.services.accounts import DeletionHook
from entitle.services.inbox import EventProcessor, Inbox
from entitle.services.ratelimit import SignInRateLimiter
from entitle.services.tokens import SigningKey, TokenIssuer
from entitle.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    database: Database
    catalog: Catalog
    tokens: TokenIssuer
    rate_limiter: SignInRateLimiter
    # One pooled HTTP client for outbound calls (JWKS, App Store API); closed on shutdown.
    http: httpx.AsyncClient
    inbox: Inbox
    # Mail, encryption at rest, Sign in with Apple's API, external sign-in (services.account_setup).
    accounts: AccountServices
    # Provider objects by name ("stripe", "app_store", "apple_signin", ...), see entitle.providers.
    providers: dict[str, Any] = field(default_factory=dict)
    # Identity verifiers by provider name ("apple", "google"), see entitle.identity.
    identity_verifiers: dict[str, Any] = field(default_factory=dict)
    # Run by services.accounts.delete_account before an account is erased (e.g. cancel Stripe billing).
    account_deletion_hooks: list[DeletionHook] = field(default_factory=list)

    async def aclose(self) -> None:
        for provider in self.providers.values():
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()
        await self.http.aclose()
        await self.rate_limiter.close()
        await self.database.dispose()


def signing_key_for(settings: Settings) -> SigningKey:
    """The configured key; in development, a key generated on first start and kept beside the database."""
    if settings.jwt_private_key_path is not None:
        return SigningKey.load_or_create(settings.jwt_private_key_path, create=settings.is_development)
    return SigningKey.load_or_create(Path(".entitle") / "access-token-key.pem", create=True)


def build_context(
    settings: Settings,
    *,
    http: httpx.AsyncClient | None = None,
    signing_key: SigningKey | None = None,
    catalog: Catalog | None = None,
) -> AppContext:
    """Build every long-lived piece; raises CatalogError or ValueError on bad configuration."""
    from entitle.identity.build import build_identity_verifiers
    from entitle.providers import build_providers
    from entitle.services.apple_tokens import revoke_on_deletion
    from entitle.services.entitlements import bind_entitlement_rules

    database = Database(settings.database_url)
    http = http or httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0))
    processors: dict[str, EventProcessor] = {}
    context = AppContext(
        settings=settings,
        database=database,
        catalog=catalog or load_catalog(settings.catalog),
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
        inbox=Inbox(database, processors),
        accounts=build_account_services(settings, http),
    )
    # Sessions carry the catalog so providers can store subscriptions with nothing but a session.
    bind_entitlement_rules(database, context.catalog, settings.public_url)
    context.identity_verifiers = build_identity_verifiers(settings, http)
    context.providers = build_providers(context)
    context.account_deletion_hooks.append(revoke_on_deletion)
    for name, provider in context.providers.items():
        processor = getattr(provider, "process_event", None)
        if processor is not None:
            processors[name] = processor
    return context
