"""The operator's summary with the server key: actives, MRR, and what changed day by day."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from entitle.core.subscriptions import Environment
from entitle.services.reporting import reports
from entitle.web.deps import AdminDep, ContextDep, SessionDep

router = APIRouter(prefix="/v1/reports", tags=["reports"])


class Counts(BaseModel):
    new: int = Field(description="Subscriptions started (`subscription.started`), trials included.")
    churned: int = Field(description="Subscriptions that ended: expired or refunded.")
    trials_started: int = Field(description="Subscriptions that started in a trial.")
    trials_converted: int = Field(description="Trials whose first paid period began.")
    refunds: int = Field(description="Subscriptions a store took back (`subscription.refunded`).")


class Day(BaseModel):
    date: date
    new: int
    churned: int
    trials_started: int
    trials_converted: int
    refunds: int


class OneTimeDay(BaseModel):
    date: date
    purchases: int = Field(description="One-time purchases made that day (Family Sharing copies aside).")
    revenue: dict[str, int] = Field(
        description="What that day's purchases brought in per currency, in minor units, net of refunds."
    )


class Active(BaseModel):
    total: int = Field(description="Store subscriptions that grant access now, trials included.")
    trialing: int
    by_store: dict[str, int] = Field(description="`stripe`, `app_store`: active subscriptions.")
    by_product: dict[str, dict[str, int]] = Field(
        description=f"Per store, per catalog product; `{reports.NOT_IN_CATALOG}` for products not in it."
    )
    promotional: dict[str, int] = Field(description="Promotional grants in force, per entitlement.")


class Summary(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from")
    to: date
    environment: Environment = Field(
        description="Whose figures these are: `production`, or `sandbox` (Stripe test mode, the App Store's"
        " Sandbox). The two are never added together."
    )
    as_of: datetime = Field(description="When `active` and `mrr` were read: they are now, not as of `to`.")
    active: Active
    mrr: dict[str, int] = Field(
        description="Monthly recurring revenue per currency, in minor units (cents): Stripe subscriptions at"
        " their catalog price, App Store ones at the price and currency of their last transaction; a year"
        " counts a twelfth."
    )
    mrr_unpriced: dict[str, int] = Field(
        description="Paying subscriptions per store with no price to count: a Stripe product not in the"
        " catalog, an App Store transaction that carries no price."
    )
    totals: Counts
    refunded: dict[str, int] = Field(description="Refunded on Stripe charges per currency, in minor units.")
    daily: list[Day] = Field(description="Every day of the range, oldest first, zeros included.")
    one_time_revenue: dict[str, int] = Field(
        description="One-time purchases (lifetime unlocks, packs, passes) made in the range, per currency in"
        " minor units: what each paid less what was refunded of it since; nothing for one refunded or lost"
        " to a dispute in full. Beside `mrr`, never in it."
    )
    one_time_purchases: int = Field(description="One-time purchases made in the range.")
    one_time_unpriced: int = Field(description="Of those, purchases whose store gave no price to count.")
    one_time_daily: list[OneTimeDay] = Field(description="Every day of the range, oldest first.")


# Plain text, parsed here: a malformed date is a 400 with its own code, not a generic 422.
From = Annotated[
    str | None, Query(alias="from", description="First UTC day, YYYY-MM-DD (default: 29 days before `to`).")
]
To = Annotated[str | None, Query(alias="to", description="Last UTC day, YYYY-MM-DD (default: today, UTC).")]
InEnvironment = Annotated[
    Environment,
    Query(
        alias="environment",
        description="`production` (the default) or `sandbox`: Stripe test mode and the App Store's Sandbox.",
    ),
]


@router.get("/summary", response_model=Summary)
async def report_summary(
    _admin: AdminDep,
    db: SessionDep,
    context: ContextDep,
    start: From = None,
    end: To = None,
    environment: InEnvironment = Environment.PRODUCTION,
) -> dict[str, Any]:
    """Actives by store and product and MRR now; new, churned, trials and refunds per day (at most 366);
    one-time revenue per day; of production, or of the sandbox with `environment=sandbox`."""
    first, last = reports.report_range(start, end, datetime.now(UTC).date())
    return await reports.summary(db, context.catalog, first, last, environment)
