"""The one typed settings object.

Every `ENTITLE_*` environment variable is read here and nowhere else; the object is built once (at
start-up, or by a test) and handed to whoever needs it. Secrets are `SecretStr` so they never appear in
a repr or a log line. Outside development, placeholder secrets and switched-off signature checks are
refused at start-up rather than discovered in production.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./entitle.db"
# The business's moments the team channel can be told of, each switchable (`ENTITLE_TEAM_CHANNEL_EVENTS`).
TEAM_CHANNEL_MOMENTS = ("new_subscriber", "cancellation", "refund", "billing_problem")
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "test", "dev", "development", "xxx"})


class RunEnvironment(StrEnum):
    # A developer's machine: generated signing keys, relaxed checks that say so loudly.
    DEVELOPMENT = "development"
    # The test suite: like development, but nothing is written outside the test's own folders.
    TEST = "test"
    # Anywhere real people and money are involved: every check on, no placeholders.
    PRODUCTION = "production"


class RestorePolicy(StrEnum):
    # A restored App Store purchase stays with the account that first posted it.
    KEEP = "keep"
    # A restored App Store purchase moves to the account that posted it last.
    TRANSFER = "transfer"


CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ENTITLE_", extra="ignore", frozen=True)

    environment: RunEnvironment = RunEnvironment.DEVELOPMENT
    database_url: str = DEFAULT_SQLITE_URL
    public_url: str = "http://127.0.0.1:8000"
    # The web app's own origins (e.g. https://app.example.com): allowed to call the API from the browser
    # (CORS) and to be where Stripe sends people back after Checkout or the Billing Portal.
    web_origins: CommaList = Field(default_factory=list)
    admin_api_key: SecretStr | None = None
    catalog: Path | None = None  # None: the sample catalog shipped in the package

    # Access tokens are ES256 JWTs; in development the key is generated once and kept in this file.
    jwt_private_key_path: Path | None = None
    jwt_issuer: str = "entitle"
    access_token_ttl_seconds: int = Field(default=900, ge=60, le=86_400)
    refresh_token_ttl_days: int = Field(default=60, ge=1, le=365)

    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # Slow or silent clients (slowloris): the time allowed to send the request headers, then the body,
    # and how long an idle kept-alive connection stays open.
    http_header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    http_body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    http_keep_alive_seconds: float = Field(default=5.0, gt=0, le=300)
    # Proxies (addresses or CIDRs) whose X-Forwarded-For names the client; none by default, so a client
    # cannot pick the address its rate limits are counted under.
    trusted_proxies: CommaList = Field(default_factory=list)
    # Slack-compatible incoming webhook (`{"text": ...}`) for operator alerts; unset: alerts are logged.
    # A secret: whoever has a Slack webhook URL can post to the channel.
    alert_webhook_url: SecretStr | None = None
    # Slack-compatible incoming webhook told of the business's moments (services/delivery/team_channel.py),
    # and which moments: new_subscriber, cancellation, refund, billing_problem. A secret, like the above.
    team_channel_url: SecretStr | None = None
    team_channel_events: CommaList = Field(default_factory=lambda: list(TEAM_CHANNEL_MOMENTS))
    # The operator's word that the database is backed up (docs/deploy.md#backups-and-restore); nothing
    # here can see a provider's backups, so the production checklist asks.
    backups_configured: bool = False
    # Sign-in and registration limits, in the `limits` library's notation.
    rate_limit_per_address: str = "10/minute"
    rate_limit_per_ip: str = "60/minute"
    # Mails one address may be sent through the routes that mail (register, forgot, resend, password).
    rate_limit_mail_per_address: str = "5/hour"
    redis_url: str | None = None
    # Open entitlement streams one account may hold in one process (tabs, devices); more answer 429.
    streams_per_account: int = Field(default=10, ge=1, le=1000)
    # A comment line this often keeps idle streams open through proxies and load balancers.
    stream_heartbeat_seconds: float = Field(default=15.0, ge=0.05, le=300)

    stripe_secret_key: SecretStr | None = None
    stripe_publishable_key: str | None = None
    # Several secrets at once so a webhook secret can be rotated without dropping events.
    stripe_webhook_secret: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    stripe_api_base: str = "https://api.stripe.com"
    # Requests per second this process may send to Stripe in all (default: Stripe's own account-wide
    # limit, 25 with a test key, 100 live, divided by N under `serve --workers N`); each endpoint also
    # stays under min(25, this).
    stripe_max_requests_per_second: float | None = Field(default=None, gt=0)
    # How long past_due still entitles while Stripe retries the payment.
    stripe_grace_days: int = Field(default=7, ge=0, le=60)
    # Pay first, the account after: /pricing sends visitors to Checkout without signing in, and what
    # they pay waits, unclaimed, for whoever proves the right to it (services/billing/guest_checkout.py).
    guest_checkout: bool = False
    # Stripe Tax on every Checkout and Payment Element path, with billing address and tax-id collection
    # (needs tax registrations in the Stripe dashboard; docs/stripe.md).
    stripe_automatic_tax: bool = False

    apple_bundle_id: str | None = None
    apple_app_id: int | None = None
    # The Apple developer Team ID: with the bundle id it names the app in the universal-link file.
    ios_app_id_prefix: str | None = Field(default=None, pattern=r"^[A-Z0-9]{10}$")
    apple_root_certs: CommaList = Field(default_factory=list)
    apple_online_checks: bool = True
    # Xcode and LocalTesting data carry no real signature; only a developer may accept them.
    apple_allow_xcode: bool = False
    apple_issuer_id: str | None = None
    apple_key_id: str | None = None
    apple_private_key_path: Path | None = None
    # The same key's text (the .p8 file's PEM), pasted on /admin/setup; the path wins when both are given.
    apple_private_key: SecretStr | None = None
    apple_api_base: str | None = None
    appstore_restore_policy: RestorePolicy = RestorePolicy.KEEP

    apple_signin_client_ids: CommaList = Field(default_factory=list)
    apple_signin_jwks_url: str = "https://appleid.apple.com/auth/keys"
    google_client_ids: CommaList = Field(default_factory=list)
    google_jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"
    # Sign in with Apple's REST API (authorization codes in, refresh tokens kept to revoke at deletion).
    apple_signin_team_id: str | None = None
    apple_signin_key_id: str | None = None
    apple_signin_private_key_path: Path | None = None
    # The same key's text (PEM), pasted on /admin/setup; the path wins when both are given.
    apple_signin_private_key: SecretStr | None = None
    apple_signin_api_base: str = "https://appleid.apple.com"

    # Mail: smtp://user:pass@host:port (STARTTLS when offered) or smtps://...; without it, development
    # writes mails to the log.
    smtp_url: SecretStr | None = None
    email_from: str = "entitle <no-reply@localhost>"
    # Named in mails and their subjects, and on the hosted pages.
    app_name: str = Field(default="entitle", min_length=1, max_length=80)
    # The hosted pages' accent (buttons, links): a hex color such as #4f46e5.
    brand_color: str = Field(default="#4f46e5", pattern=r"^#(?:[0-9a-fA-F]{3}){1,2}$")
    # A logo for the hosted pages and the dashboard (SVG, PNG or JPEG); without one, the app name's initial.
    logo_path: Path | None = None
    # Sign in with Apple and Google on the hosted pages: the web client ids (Apple's Services ID; Google's
    # OAuth client id for the web). Each must also be in its ENTITLE_*_CLIENT_IDS list.
    apple_signin_web_client_id: str | None = None
    google_web_client_id: str | None = None
    google_auth_url: str = "https://accounts.google.com/o/oauth2/v2/auth"
    # Fernet key (urlsafe base64 of 32 bytes) that encrypts provider tokens at rest; generated beside the
    # access-token key in development.
    encryption_key: SecretStr | None = None

    # Apps that keep their own sign-in: their tokens are accepted on every signed-in route.
    external_auth_jwks_url: str | None = None
    external_auth_issuer: str | None = None
    external_auth_audience: str | None = None

    @field_validator(
        "apple_root_certs",
        "apple_signin_client_ids",
        "google_client_ids",
        "web_origins",
        "trusted_proxies",
        "team_channel_events",
        mode="before",
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("stripe_webhook_secret", mode="before")
    @classmethod
    def _comma_secrets(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("team_channel_events")
    @classmethod
    def _team_moments(cls, values: list[str]) -> list[str]:
        for value in values:
            if value not in TEAM_CHANNEL_MOMENTS:
                raise ValueError(f"{value!r} is not one of {', '.join(TEAM_CHANNEL_MOMENTS)}")
        return values

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("smtp://", "smtps://")):
            raise ValueError("must look like smtp://user:pass@host:587 or smtps://user:pass@host:465")
        return value

    @model_validator(mode="after")
    def _external_auth_complete(self) -> Settings:
        parts = (self.external_auth_jwks_url, self.external_auth_issuer, self.external_auth_audience)
        if any(parts) and not all(parts):
            raise ValueError(
                "ENTITLE_EXTERNAL_AUTH_JWKS_URL, _ISSUER and _AUDIENCE are set together or not at all"
            )
        return self

    @property
    def external_auth_enabled(self) -> bool:
        return self.external_auth_jwks_url is not None

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("web_origins")
    @classmethod
    def _origins(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.startswith(("https://", "http://")) or value.rstrip("/").count("/") > 2:
                raise ValueError(f"{value!r} is not an origin like https://app.example.com")
        return [value.rstrip("/") for value in values]

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError as exc:
                raise ValueError(f"{value!r} is not an IP address or CIDR like 10.0.0.0/8") from exc
        return values

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment is not RunEnvironment.PRODUCTION:
            return self
        problems = []
        if _is_placeholder(self.admin_api_key):
            problems.append("ENTITLE_ADMIN_API_KEY must be set to a real secret")
        if self.stripe_secret_key is not None and _is_placeholder(self.stripe_secret_key):
            problems.append("ENTITLE_STRIPE_SECRET_KEY is a placeholder")
        if any(_is_placeholder(secret) for secret in self.stripe_webhook_secret):
            problems.append("ENTITLE_STRIPE_WEBHOOK_SECRET contains a placeholder")
        if self.jwt_private_key_path is None:
            problems.append("ENTITLE_JWT_PRIVATE_KEY_PATH must name the access-token signing key")
        if not self.apple_online_checks:
            problems.append("ENTITLE_APPLE_ONLINE_CHECKS cannot be off in production")
        if self.apple_allow_xcode:
            problems.append("ENTITLE_APPLE_ALLOW_XCODE cannot be on in production")
        if self.smtp_url is None:
            problems.append(
                "ENTITLE_SMTP_URL must be set: password sign-in needs mail for verification and reset"
            )
        if self.encryption_key is None:
            problems.append("ENTITLE_ENCRYPTION_KEY must be set (it encrypts Sign in with Apple tokens)")
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self

    @property
    def is_development(self) -> bool:
        return self.environment is not RunEnvironment.PRODUCTION

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url.startswith("sqlite")


def is_placeholder_secret(secret: SecretStr | None) -> bool:
    """No secret, a well-known placeholder, or too short to resist guessing."""
    return _is_placeholder(secret)


def _is_placeholder(secret: SecretStr | None) -> bool:
    if secret is None:
        return True
    value = secret.get_secret_value().strip()
    return value.lower() in PLACEHOLDER_SECRETS or len(value) < 16
