"""Payment providers, registered in one place.

Each provider package speaks one vendor's protocol and maps its objects onto core types. A provider
object may offer `process_event(db, event) -> outcome` (the inbox calls it for events stored under the
provider's name) and `aclose()`. Adding a store means one new package and one line here.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from entitle.context import AppContext


def build_providers(context: AppContext) -> dict[str, Any]:
    providers: dict[str, Any] = {}
    # Registered by the provider packages (one line each):
    providers["apple_signin"] = _apple_signin_events(context)
    providers["stripe"] = _stripe(context)
    providers["app_store"] = _app_store(context)
    return providers


def _apple_signin_events(context: AppContext) -> Any:
    from entitle.services.apple_signin import AppleSigninEvents

    return AppleSigninEvents(context)


def _stripe(context: AppContext) -> Any:
    from entitle.providers.stripe.provider import StripeProvider
    from entitle.services.billing_stripe import cancel_for_deleted_account

    provider = StripeProvider(context)
    if provider.configured:
        context.account_deletion_hooks.append(partial(cancel_for_deleted_account, stripe=provider))
    return provider


def _app_store(context: AppContext) -> Any:
    from entitle.providers.appstore.provider import AppStoreProvider

    return AppStoreProvider.build(context)
