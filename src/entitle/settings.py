"""The one typed settings object.

Every `ENTITLE_*` environment variable is read here and nowhere else; the object is built once (at
start-up, or by a test) and handed to whoever needs it. Secrets are `SecretStr` so they never appear in
a repr or a log line. Outside development, placeholder secrets and switched-off signature checks are
refused at start-up rather than discovered in production.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./entitle.db"
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
    # Slack-compatible incoming webhook (`{"text": ...}`) for operator alerts; unset: alerts are logged.
    # A secret: whoever has a Slack webhook URL can post to the channel.
    alert_webhook_url: SecretStr | None = None
    # Sign-in and registration limits, in the `limits` library's notation.
    rate_limit_per_address: str = "10/minute"
    rate_limit_per_ip: str = "60/minute"
    redis_url: str | None = None

    stripe_secret_key: SecretStr | None = None
    stripe_publishable_key: str | None = None
    # Several secrets at once so a webhook secret can be rotated without dropping events.
    stripe_webhook_secret: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    stripe_api_base: str = "https://api.stripe.com"
    # How long past_due still entitles while Stripe retries the payment.
    stripe_grace_days: int = Field(default=7, ge=0, le=60)

    apple_bundle_id: str | None = None
    apple_app_id: int | None = None
    apple_root_certs: CommaList = Field(default_factory=list)
    apple_online_checks: bool = True
    # Xcode and LocalTesting data carry no real signature; only a developer may accept them.
    apple_allow_xcode: bool = False
    apple_issuer_id: str | None = None
    apple_key_id: str | None = None
    apple_private_key_path: Path | None = None
    apple_api_base: str | None = None
    appstore_restore_policy: RestorePolicy = RestorePolicy.KEEP

    apple_signin_client_ids: CommaList = Field(default_factory=list)
    apple_signin_jwks_url: str = "https://appleid.apple.com/auth/keys"
    google_client_ids: CommaList = Field(default_factory=list)
    google_jwks_url: str = "https://www.googleapis.com/oauth2/v3/certs"

    @field_validator(
        "apple_root_certs", "apple_signin_client_ids", "google_client_ids", "web_origins", mode="before"
    )
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return _split_commas(value)

    @field_validator("stripe_webhook_secret", mode="before")
    @classmethod
    def _comma_secrets(cls, value: Any) -> Any:
        return _split_commas(value)

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
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self

    @property
    def is_development(self) -> bool:
        return self.environment is not RunEnvironment.PRODUCTION

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url.startswith("sqlite")


def _is_placeholder(secret: SecretStr | None) -> bool:
    if secret is None:
        return True
    value = secret.get_secret_value().strip()
    return value.lower() in PLACEHOLDER_SECRETS or len(value) < 16
