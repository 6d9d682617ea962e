"""The long-lived pieces accounts need (issue 9), built once per process into AppContext.accounts."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from entitle.identity.apple_api import AppleSigninApi
from entitle.identity.external import ExternalTokenVerifier
from entitle.services.delivery.mail import Mailer, build_mailer
from entitle.services.identity.encryption import SecretBox, secret_box_for
from entitle.settings import Settings


@dataclass
class AccountServices:
    # Sends what the mail outbox holds (SMTP, or the log in development).
    mailer: Mailer
    # Encrypts provider tokens kept at rest (Sign in with Apple refresh tokens).
    secret_box: SecretBox
    # Sign in with Apple's REST API; None until the team's key is configured.
    apple_api: AppleSigninApi | None
    # The app's own identity provider; None unless ENTITLE_EXTERNAL_AUTH_* are set.
    external_auth: ExternalTokenVerifier | None


def build_account_services(settings: Settings, http: httpx.AsyncClient) -> AccountServices:
    """Raises ValueError (with the setting's name) when a configured key cannot be read."""
    apple_api = None
    if settings.apple_signin_team_id and settings.apple_signin_key_id:
        # The key file wins over pasted text, as it does for the In-App Purchase key.
        try:
            if settings.apple_signin_private_key_path:
                apple_api = AppleSigninApi.from_key_file(
                    team_id=settings.apple_signin_team_id,
                    key_id=settings.apple_signin_key_id,
                    path=settings.apple_signin_private_key_path,
                    http=http,
                    api_base=settings.apple_signin_api_base,
                )
            elif settings.apple_signin_private_key is not None:
                apple_api = AppleSigninApi.from_key_text(
                    team_id=settings.apple_signin_team_id,
                    key_id=settings.apple_signin_key_id,
                    text=settings.apple_signin_private_key.get_secret_value(),
                    http=http,
                    api_base=settings.apple_signin_api_base,
                )
        except (OSError, ValueError) as exc:
            setting = (
                "ENTITLE_APPLE_SIGNIN_PRIVATE_KEY_PATH"
                if settings.apple_signin_private_key_path
                else "ENTITLE_APPLE_SIGNIN_PRIVATE_KEY"
            )
            raise ValueError(f"{setting}: {exc}") from exc
    external_auth = None
    if settings.external_auth_jwks_url and settings.external_auth_issuer and settings.external_auth_audience:
        external_auth = ExternalTokenVerifier(
            jwks_url=settings.external_auth_jwks_url,
            issuer=settings.external_auth_issuer,
            audience=settings.external_auth_audience,
            http=http,
        )
    return AccountServices(
        mailer=build_mailer(settings),
        secret_box=secret_box_for(settings),
        apple_api=apple_api,
        external_auth=external_auth,
    )
