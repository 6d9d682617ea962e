"""Entitlement streams: who may open one, and what it sends.

A stream is opened by a signed-in session, with its access token in the Authorization header (the iOS
app, a React client using fetch), or with a ticket in the query string, because a browser's EventSource
cannot send headers. A ticket is single-use, lives 60 seconds and is stored hashed; it opens a stream
for the session that asked for it, and the stream ends when that session does.

`answer_events` is the stream itself: the answer on connect, the answer again whenever it changed (the
change bus wakes it; it re-reads and sends only when the ETag moved), a comment heartbeat so proxies and
load balancers keep the connection, and a re-read at the moment time alone changes the answer (a period
ends). Every re-read checks the session too, in the same query as the answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from entitle.core.models.events import StreamTicket
from entitle.db.engine import Database
from entitle.db.types import utcnow
from entitle.errors import Unauthorized
from entitle.services.access.entitlements import SessionAnswer, read_answer_for_session
from entitle.services.delivery.changes import ChangeBus

TICKET_TTL = timedelta(seconds=60)
TICKET_PREFIX = "st_"


@dataclass(frozen=True)
class StreamGrant:
    account_id: uuid.UUID
    # None for a token from the app's own identity provider (no entitle session to end).
    session_id: uuid.UUID | None


def _hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


async def issue_ticket(db: AsyncSession, account_id: uuid.UUID, session_id: uuid.UUID | None) -> str:
    ticket = TICKET_PREFIX + secrets.token_urlsafe(32)
    db.add(
        StreamTicket(
            ticket_hash=_hash(ticket),
            account_id=account_id,
            session_id=session_id,
            expires_at=utcnow() + TICKET_TTL,
        )
    )
    await db.flush()
    return ticket


async def redeem_ticket(database: Database, ticket: str) -> StreamGrant:
    """The session a ticket was issued to; the ticket cannot be used again."""
    if not ticket.startswith(TICKET_PREFIX) or len(ticket) > 200:
        raise Unauthorized("This stream ticket is not valid.", code="invalid_ticket")
    now = utcnow()
    async with database.transaction() as db:
        used = (
            await db.execute(
                update(StreamTicket)
                .where(
                    StreamTicket.ticket_hash == _hash(ticket),
                    StreamTicket.used_at.is_(None),
                    StreamTicket.expires_at > now,
                )
                .values(used_at=now)
                .returning(StreamTicket.account_id, StreamTicket.session_id)
            )
        ).first()
    if used is None:
        raise Unauthorized(
            "This stream ticket is unknown, expired or already used; ask for a new one.",
            code="invalid_ticket",
        )
    return StreamGrant(account_id=used.account_id, session_id=used.session_id)


async def forget_old_tickets(db: AsyncSession) -> int:
    result = await db.execute(delete(StreamTicket).where(StreamTicket.expires_at < utcnow() - TICKET_TTL))
    return int(result.rowcount)  # type: ignore[attr-defined]


def sse(event: str, data: bytes, *, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {event}\n".encode() + b"data: " + data + b"\n\n"


HEARTBEAT = b": ping\n\n"
SESSION_ENDED = b'{"error":{"code":"session_revoked","message":"This session has ended; sign in again."}}'


async def answer_events(
    database: Database,
    bus: ChangeBus,
    grant: StreamGrant,
    first: SessionAnswer,
    woken: asyncio.Event,
    *,
    heartbeat_seconds: float,
) -> AsyncIterator[bytes]:
    """The bytes of one stream, until the client goes away or the session ends."""
    # Browsers reconnect by themselves after this long when the connection drops.
    yield b"retry: 2000\n\n"
    answer, sent = first, None
    while True:
        if answer.etag != sent:
            yield sse("entitlements", answer.body, event_id=answer.etag.strip('"'))
            sent = answer.etag
        timeout = heartbeat_seconds
        if answer.recheck_at is not None:
            timeout = min(timeout, max(0.0, (answer.recheck_at - utcnow()).total_seconds()) + 0.01)
        try:
            await asyncio.wait_for(woken.wait(), timeout)
            woken.clear()
        except TimeoutError:
            yield HEARTBEAT
        try:
            answer = await read_answer_for_session(database, grant.account_id, grant.session_id)
        except Unauthorized:
            yield sse("session_ended", SESSION_ENDED)
            return
