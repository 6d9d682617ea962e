"""The app's In-App Purchase key (App Store Connect > Users and Access > Integrations), read once from the
settings for the two things it signs: App Store Server API requests and promotional offers.

The key is a file on the server (`apple_private_key_path`) or its text pasted on /admin/setup
(`apple_private_key`, stored encrypted); the file wins when both are given, as the environment wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from entitle.providers.appstore.errors import AppStoreMisconfigured
from entitle.settings import Settings

PATH_SETTING = "ENTITLE_APPLE_PRIVATE_KEY_PATH"
TEXT_SETTING = "ENTITLE_APPLE_PRIVATE_KEY"


@dataclass(frozen=True)
class InAppPurchaseKey:
    signing_key: bytes  # PEM
    key_id: str
    issuer_id: str
    bundle_id: str
    # The setting the key came from, named when it turns out not to be a usable key.
    setting: str = PATH_SETTING


def in_app_purchase_key(settings: Settings, *, needed_for: str) -> InAppPurchaseKey | None:
    """None when no key is configured; a key without the bundle id, or one that cannot be read, stops
    start-up with the setting to fix (`needed_for` says what it is for)."""
    has_key = settings.apple_private_key_path is not None or settings.apple_private_key is not None
    if not (settings.apple_issuer_id and settings.apple_key_id and has_key):
        return None
    if not settings.apple_bundle_id:
        raise AppStoreMisconfigured(f"ENTITLE_APPLE_BUNDLE_ID must be set to {needed_for}.")
    if settings.apple_private_key_path is not None:
        try:
            key = Path(settings.apple_private_key_path).read_bytes()
        except OSError as exc:
            raise AppStoreMisconfigured(f"{PATH_SETTING} cannot be read: {exc}.") from exc
        setting = PATH_SETTING
    else:
        assert settings.apple_private_key is not None
        key = pasted_key(settings.apple_private_key.get_secret_value(), setting=TEXT_SETTING)
        setting = TEXT_SETTING
    return InAppPurchaseKey(
        key, settings.apple_key_id, settings.apple_issuer_id, settings.apple_bundle_id, setting=setting
    )


def pasted_key(text: str, *, setting: str) -> bytes:
    """A pasted .p8 key as PEM bytes; refused (naming `setting`, never quoting the text) unless it is a
    private key. Pasting loses or doubles line ends, so they are normalised first."""
    pem = "\n".join(line.strip() for line in text.strip().splitlines() if line.strip()) + "\n"
    try:
        serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        raise AppStoreMisconfigured(
            f"{setting} is not the text of a .p8 key: paste the whole file, from "
            "-----BEGIN PRIVATE KEY----- to -----END PRIVATE KEY-----."
        ) from None
    return pem.encode()
