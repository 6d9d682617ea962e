"""Payment providers, registered in one place.

Each provider package speaks one vendor's protocol and maps its objects onto core types. A provider
object may offer `process_event(db, event) -> outcome` (the inbox calls it for events stored under the
provider's name) and `aclose()`. Adding a store means one new package and one line here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from entitle.context import AppContext


def build_providers(context: AppContext) -> dict[str, Any]:
    providers: dict[str, Any] = {}
    # Registered by the provider packages (one line each):
    return providers
