"""The server-key feed of every account's events, and the Prometheus metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from entitle.services.delivery import events_feed, metrics_queue
from entitle.web.deps import AdminDep, SessionDep

router = APIRouter(tags=["your backend"])


@router.get("/v1/events")
async def all_events(
    _admin: AdminDep,
    db: SessionDep,
    after: Annotated[str | None, Query(max_length=200, description="`next` from the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    type: Annotated[str | None, Query(max_length=80, pattern=r"^[a-z_]+(\.[a-z_]+)*(\.\*)?$")] = None,
) -> dict[str, Any]:
    """Every account's events, oldest first, from after the cursor; `type` exact or `entitlement.*`."""
    return await events_feed.list_events(db, after=after, limit=limit, type=type)


@router.get("/metrics", response_class=Response)
async def prometheus_metrics(_admin: AdminDep, db: SessionDep) -> Response:
    """Prometheus text format: requests, provider events, queue depth and age, deliveries, streams."""
    body, content_type = await metrics_queue.scrape(db)
    return Response(content=body, media_type=content_type)
