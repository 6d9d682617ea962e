"""Claiming due rows with a lease: how every queue of background work (provider events, mail, outbound
webhooks, Apple token revocations) hands each row to one worker at a time.

The rows are picked (on PostgreSQL skipping rows another worker has locked), then claimed with one
conditional UPDATE that moves `next_attempt_at` to the end of the lease, only for rows still due at that
moment: the row locks end with the transaction, and SQLite has none, so a second worker that picked the
same rows finds them claimed. A worker that dies lets its lease run out and the rows come back.

A batch is sent one row after another, so a lease taken for the whole batch may run out before the last
row's turn, and another worker may claim that row meanwhile. Queues that send something the world sees
(mail, webhooks, revocations) therefore send each row `holding` its lease: taken again right before the
send, and renewed while the send lasts, however slow the receiver. The end of the lease this worker wrote
is its proof of ownership (a later claim always writes a later end), so a renewal succeeds only when nobody
claimed the row since; a worker that lost the row does not send it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.db.engine import Database
from entitle.db.types import utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """A row this worker claimed, and the end of the lease it wrote on it (its proof of ownership)."""

    id: uuid.UUID
    until: datetime


async def claim_due(
    db: AsyncSession,
    model: Any,
    due: ColumnElement[bool],
    *,
    order_by: Any,
    limit: int,
    lease_until: datetime,
    returning: tuple[Any, ...] = (),
    pick: Select[Any] | None = None,
) -> list[Any]:
    """Claim up to `limit` rows of `model` matching `due`, in `order_by`'s order; returns their ids (or
    rows of `returning`). `pick` selects the candidates' ids when `due` alone does not say (a join)."""
    query = (pick if pick is not None else select(model.id).where(due)).order_by(order_by).limit(limit)
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=model, skip_locked=True)
    candidates: list[uuid.UUID] = list((await db.scalars(query)).all())
    if not candidates:
        return []
    claimed = await db.execute(
        update(model)
        .where(model.id.in_(candidates), due)
        .values(next_attempt_at=lease_until)
        .returning(model.id, *(returning or (model.id,)))
        .execution_options(synchronize_session=False)
    )
    # UPDATE ... RETURNING gives no order; the rows go back in the order they were picked.
    by_id = {row[0]: tuple(row[1:]) for row in claimed.all()}
    rows = [by_id[row_id] for row_id in candidates if row_id in by_id]
    return rows if returning else [row[0] for row in rows]


async def claim_leases(
    db: AsyncSession,
    model: Any,
    due: ColumnElement[bool],
    *,
    order_by: Any,
    limit: int,
    lease: timedelta,
    pick: Select[Any] | None = None,
) -> list[Claim]:
    """`claim_due` for rows that are sent one by one: each comes with the lease `renew` checks."""
    until = utcnow() + lease
    ids = await claim_due(db, model, due, order_by=order_by, limit=limit, lease_until=until, pick=pick)
    return [Claim(row_id, until) for row_id in ids]


async def renew(database: Database, model: Any, claim: Claim, lease: timedelta) -> Claim | None:
    """Take the row's lease again; None when another worker claimed it since.

    Committed at once: the send it covers holds no transaction (nor, on SQLite, the write lock)."""
    until = utcnow() + lease
    async with database.transaction() as db:
        renewed = await db.scalar(
            update(model)
            .where(model.id == claim.id, model.next_attempt_at == claim.until)
            .values(next_attempt_at=until)
            .returning(model.id)
            .execution_options(synchronize_session=False)
        )
    return Claim(claim.id, until) if renewed is not None else None


@asynccontextmanager
async def holding(database: Database, model: Any, claim: Claim, lease: timedelta) -> AsyncIterator[bool]:
    """Hold the row's lease for the block: True when it is still this worker's (send), False when another
    worker claimed it since (do not send). While the block runs, the lease is renewed every third of its
    length, so a send slower than the lease does not let another worker claim the row meanwhile."""
    held = await renew(database, model, claim, lease)
    if held is None:
        log.info("%s %s was claimed by another worker; not sent here", model.__tablename__, claim.id)
        yield False
        return
    done = asyncio.Event()
    keeper = asyncio.create_task(_keep(database, model, held, lease, done))
    try:
        yield True
    finally:
        # The keeper finishes its renewal, if one is under way, before the caller records the outcome.
        done.set()
        await keeper


async def _keep(database: Database, model: Any, claim: Claim, lease: timedelta, done: asyncio.Event) -> None:
    while True:
        try:
            await asyncio.wait_for(done.wait(), lease.total_seconds() / 3)
            return
        except TimeoutError:
            pass
        try:
            renewed = await renew(database, model, claim, lease)
        except (SQLAlchemyError, OSError):
            log.warning("could not renew the lease on %s %s", model.__tablename__, claim.id, exc_info=True)
            continue
        if renewed is None:
            log.warning("the lease on %s %s ran out during its send", model.__tablename__, claim.id)
            return
        claim = renewed
