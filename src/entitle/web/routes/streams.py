"""Entitlement changes pushed to clients: Server-Sent Events, and tickets for browsers' EventSource."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from entitle import metrics
from entitle.services.access.entitlements import read_answer_for_session
from entitle.services.delivery import streams
from entitle.web.deps import ContextDep, SessionDep, SignedIn, verified_claims

router = APIRouter(tags=["entitlements"])


@router.post("/v1/me/stream-tickets", status_code=201)
async def create_stream_ticket(signed_in: SignedIn, db: SessionDep) -> dict[str, Any]:
    """A single-use ticket (60 s) to open the stream from a browser: `EventSource(url + "?ticket=")`."""
    ticket = await streams.issue_ticket(db, signed_in.account_id, signed_in.session_id)
    return {"ticket": ticket, "expires_in": int(streams.TICKET_TTL.total_seconds())}


@router.get(
    "/v1/me/entitlements/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "`event: entitlements` frames."}},
)
async def entitlements_stream(
    request: Request,
    context: ContextDep,
    ticket: str | None = Query(default=None, max_length=200, description="From POST /v1/me/stream-tickets."),
) -> StreamingResponse:
    """The answer now and after every change, as Server-Sent Events, with `: ping` heartbeats."""
    if ticket is not None:
        grant = await streams.redeem_ticket(context.database, ticket)
    else:
        claims = await verified_claims(request, context)
        grant = streams.StreamGrant(account_id=claims.account_id, session_id=claims.session_id)
    # Listen before the first read, so a change committed in between is not missed; a full account
    # (too many streams) is refused here, as an HTTP error, not mid-stream.
    listening = context.bus.listeners.listen(grant.account_id)
    woken = listening.__enter__()
    try:
        context.bus.start()
        first = await read_answer_for_session(context.database, grant.account_id, grant.session_id)
    except BaseException:
        listening.__exit__(None, None, None)
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            with metrics.stream_connection():
                async for chunk in streams.answer_events(
                    context.database,
                    context.bus,
                    grant,
                    first,
                    woken,
                    heartbeat_seconds=context.settings.stream_heartbeat_seconds,
                ):
                    yield chunk
        finally:
            # A client that went away costs nothing more: its listener is gone with it.
            listening.__exit__(None, None, None)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"},
    )
