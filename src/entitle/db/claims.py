"""Claiming due rows with a lease: how every queue of background work (provider events, mail, Apple
token revocations) hands each row to one worker at a time.

The rows are picked (on PostgreSQL skipping rows another worker has locked), then claimed with one
conditional UPDATE that moves `next_attempt_at` to the end of the lease, only for rows still due at that
moment: the row locks end with the transaction, and SQLite has none, so a second worker that picked the
same rows finds them claimed. A worker that dies lets its lease run out and the rows come back.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession


async def claim_due(
    db: AsyncSession,
    model: Any,
    due: ColumnElement[bool],
    *,
    order_by: Any,
    limit: int,
    lease_until: datetime,
    returning: tuple[Any, ...] = (),
) -> list[Any]:
    """Claim up to `limit` rows of `model` matching `due`; returns their ids (or rows of `returning`)."""
    query = select(model.id).where(due).order_by(order_by).limit(limit)
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    candidates: list[uuid.UUID] = list((await db.scalars(query)).all())
    if not candidates:
        return []
    claimed = await db.execute(
        update(model)
        .where(model.id.in_(candidates), due)
        .values(next_attempt_at=lease_until)
        .returning(*(returning or (model.id,)))
        .execution_options(synchronize_session=False)
    )
    rows = claimed.all()
    return list(rows) if returning else [row[0] for row in rows]
