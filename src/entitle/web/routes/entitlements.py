"""The catalog, the entitlements answer, and promotional grants."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from entitle.core.catalog import Catalog
from entitle.errors import NotFound
from entitle.services.access import entitlements, grants
from entitle.web.deps import AdminDep, ContextDep, SessionDep, verified_claims
from entitle.web.schemas import StrictBody, parse_uuid

router = APIRouter(tags=["entitlements"])


def catalog_json(catalog: Catalog) -> dict[str, Any]:
    """Entitlements and products in catalog order, with each store's identity and the Stripe price."""
    products = []
    for product in catalog.products.values():
        stripe = product.stripe
        products.append(
            {
                "key": product.key,
                "name": product.name,
                "type": product.type.value,
                "entitlements": list(product.entitlements),
                "grants": dict(product.grants),
                "max_quantity": product.max_quantity,
                "duration_days": product.duration_days,
                "stripe": None
                if stripe is None
                else {
                    "lookup_key": stripe.lookup_key,
                    "unit_amount": stripe.unit_amount,
                    "currency": stripe.currency,
                    "interval": stripe.interval.value if stripe.interval is not None else None,
                    "interval_count": stripe.interval_count,
                    "trial_days": stripe.trial_days,
                    "trial_requires_card": stripe.trial_requires_card,
                },
                **{store: {"product_id": pid} for store, pid in product.store_product_ids.items()},
            }
        )
    return {
        "entitlements": [{"key": e.key, "description": e.description} for e in catalog.entitlements.values()],
        "products": products,
        "currencies": [{"key": c.key, "name": c.name} for c in catalog.currencies.values()],
    }


# The catalog never changes while the process runs, so its body is rendered once per catalog (kept
# with the catalog itself, so a recycled id() can never serve another catalog's body).
_catalog_bodies: dict[int, tuple[Catalog, bytes]] = {}


@router.get("/v1/catalog")
async def get_catalog(context: ContextDep) -> Response:
    cached = _catalog_bodies.get(id(context.catalog))
    if cached is None or cached[0] is not context.catalog:
        body = json.dumps(catalog_json(context.catalog), separators=(",", ":")).encode()
        cached = _catalog_bodies[id(context.catalog)] = (context.catalog, body)
    return Response(
        cached[1], media_type="application/json", headers={"Cache-Control": "public, max-age=300"}
    )


@router.get(
    "/v1/me/entitlements",
    responses={304: {"description": "Not Modified: `If-None-Match` named the current ETag."}},
)
async def my_entitlements(request: Request) -> Response:
    """The signed-in account's answer, with an ETag; `If-None-Match` with the current one answers 304."""
    # The hottest route: no dependency machinery, one query that checks the session and reads the
    # stored body, which is sent as stored.
    context = request.app.state.context
    claims = await verified_claims(request, context)
    answer = await entitlements.read_answer_for_session(
        context.database, claims.account_id, claims.session_id
    )
    headers = {"ETag": answer.etag, "Cache-Control": "private, no-cache"}
    if etag_matches(request.headers.get("if-none-match"), answer.etag):
        return Response(status_code=304, headers=headers)
    return Response(answer.body, media_type="application/json", headers=headers)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of an `If-None-Match` list against our (strong) ETag."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def _account_id(value: str) -> uuid.UUID:
    account_id = parse_uuid(value)
    if account_id is None:
        # Not a UUID cannot be an account; the same answer as an unknown one.
        raise NotFound("No account has this id.", code="account_not_found")
    return account_id


@router.get("/v1/accounts/{account_id}/entitlements")
async def account_entitlements(_admin: AdminDep, account_id: str, db: SessionDep) -> JSONResponse:
    account = await grants.require_account(db, _account_id(account_id))
    return JSONResponse(await entitlements.read_entitlements(db, account.id))


class GrantBody(StrictBody):
    entitlement: str = Field(min_length=1, max_length=64)
    expires_at: datetime
    starts_at: datetime | None = None
    reason: str | None = Field(default=None, max_length=500)


@router.post("/v1/accounts/{account_id}/grants", status_code=201)
async def create_grant(_admin: AdminDep, account_id: str, body: GrantBody, db: SessionDep) -> dict[str, Any]:
    grant = await grants.create_grant(
        db,
        account_id=_account_id(account_id),
        entitlement=body.entitlement,
        expires_at=body.expires_at,
        starts_at=body.starts_at,
        reason=body.reason,
        created_by="api",
    )
    return grants.grant_json(grant)


@router.get("/v1/accounts/{account_id}/grants")
async def list_grants(_admin: AdminDep, account_id: str, db: SessionDep) -> dict[str, Any]:
    account = await grants.require_account(db, _account_id(account_id))
    return {"grants": [grants.grant_json(grant) for grant in await grants.list_grants(db, account.id)]}


@router.delete("/v1/accounts/{account_id}/grants/{grant_id}")
async def revoke_grant(_admin: AdminDep, account_id: str, grant_id: str, db: SessionDep) -> dict[str, Any]:
    account = await grants.require_account(db, _account_id(account_id))
    parsed = parse_uuid(grant_id)
    if parsed is None:
        raise NotFound("No grant has this id.", code="grant_not_found")
    grant = await grants.revoke_grant(db, parsed, account_id=account.id)
    return grants.grant_json(grant)
