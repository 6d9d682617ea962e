"""The app's In-App Purchase key (App Store Connect > Users and Access > Integrations), read once from the
settings for the two things it signs: App Store Server API requests and promotional offers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from entitle.providers.appstore.errors import AppStoreMisconfigured
from entitle.settings import Settings


@dataclass(frozen=True)
class InAppPurchaseKey:
    signing_key: bytes  # PEM
    key_id: str
    issuer_id: str
    bundle_id: str


def in_app_purchase_key(settings: Settings, *, needed_for: str) -> InAppPurchaseKey | None:
    """None when no key is configured; a key without the bundle id, or one that cannot be read, stops
    start-up with the setting to fix (`needed_for` says what it is for)."""
    if not (settings.apple_issuer_id and settings.apple_key_id and settings.apple_private_key_path):
        return None
    if not settings.apple_bundle_id:
        raise AppStoreMisconfigured(f"ENTITLE_APPLE_BUNDLE_ID must be set to {needed_for}.")
    try:
        key = Path(settings.apple_private_key_path).read_bytes()
    except OSError as exc:
        raise AppStoreMisconfigured(f"ENTITLE_APPLE_PRIVATE_KEY_PATH cannot be read: {exc}.") from exc
    return InAppPurchaseKey(key, settings.apple_key_id, settings.apple_issuer_id, settings.apple_bundle_id)
