"""Builds the identity verifiers the settings ask for."""

from __future__ import annotations

from typing import Any

import httpx

from entitle.settings import Settings


def build_identity_verifiers(settings: Settings, http: httpx.AsyncClient) -> dict[str, Any]:
    verifiers: dict[str, Any] = {}
    # Filled in by the identity package: {"apple": AppleIdentityVerifier(...), "google": ...}
    return verifiers
