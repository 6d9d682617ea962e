"""`GET /v1/events`: every account's events, in order, for backends that pull instead of (or as well
as) receiving webhooks, and to catch up after an outage.

The order is (created_at, id), and the cursor is the last event a page held. An event becomes visible
only once it is SETTLE old: transactions that started earlier may commit later (and a concurrent one
could otherwise slip an event in behind a cursor a reader already passed). Recording an event and
committing its transaction are usually milliseconds apart; five seconds is the margin, and the price of
never missing an event.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.client_input import in_window
from entitle.core.models.events import AccountEvent
from entitle.db.types import utcnow
from entitle.errors import InvalidRequest

SETTLE = timedelta(seconds=5)


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    event_id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.event_id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, value: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            moment, _, event_id = raw.partition("|")
            created_at = datetime.fromisoformat(moment)
            if created_at.tzinfo is None or not in_window(created_at):
                raise ValueError("naive time, or one no event of this server has")
            return cls(created_at=created_at, event_id=uuid.UUID(event_id))
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidRequest(
                "`after` is not a cursor this server gave out.", code="invalid_cursor"
            ) from exc


def event_json(event: AccountEvent) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "account_id": str(event.account_id),
        "type": event.type,
        "data": event.data,
        "created_at": event.created_at.isoformat(),
    }


async def list_events(
    db: AsyncSession,
    *,
    after: str | None,
    limit: int,
    type: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One page of the feed: `{"events": [...], "next": cursor}`; `next` is `after` when nothing is new."""
    query = select(AccountEvent).where(AccountEvent.created_at <= (now or utcnow()) - SETTLE)
    if after:
        cursor = Cursor.decode(after)
        query = query.where(
            or_(
                AccountEvent.created_at > cursor.created_at,
                and_(AccountEvent.created_at == cursor.created_at, AccountEvent.id > cursor.event_id),
            )
        )
    if type is not None:
        if type.endswith("*"):
            query = query.where(AccountEvent.type.startswith(type[:-1], autoescape=True))
        else:
            query = query.where(AccountEvent.type == type)
    rows = list(await db.scalars(query.order_by(AccountEvent.created_at, AccountEvent.id).limit(limit)))
    next_cursor = Cursor(rows[-1].created_at, rows[-1].id).encode() if rows else after
    return {"events": [event_json(event) for event in rows], "next": next_cursor}
