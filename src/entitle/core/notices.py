"""Things a store tells us that a person must hear about by mail, as hooks the providers call.

Providers import no service, and mail lives in `services.delivery`: the app wires a service function
into the provider (`context.build_providers`), the provider calls it inside the event's transaction, so
the mail is queued if and only if the event is processed.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

# A trial ends soon and nothing will pay for what follows: (db, account, store subscription id, trial end).
TrialEndingWithoutCard = Callable[[AsyncSession, uuid.UUID, str, datetime | None], Awaitable[None]]
