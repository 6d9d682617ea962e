"""GET /v1/reports/summary: the server key only, dates checked with their own codes, the documented shape."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from entitle.db.types import utcnow
from tests.conftest import ADMIN_KEY
from tests.factories import register

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PATH = "/v1/reports/summary"


async def test_the_server_key_is_required(client: httpx.AsyncClient) -> None:
    assert (await client.get(PATH)).json()["error"]["code"] == "missing_token"
    wrong = await client.get(PATH, headers={"Authorization": "Bearer not-the-key"})
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "invalid_server_key")
    person = await register(client)
    signed_in = await client.get(PATH, headers={"Authorization": f"Bearer {person['access_token']}"})
    assert signed_in.status_code == 401


async def test_the_default_range_is_the_last_30_days_today_included(client: httpx.AsyncClient) -> None:
    response = await client.get(PATH, headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    today = utcnow().date()
    assert body["to"] == today.isoformat()
    assert body["from"] == (today - timedelta(days=29)).isoformat()
    assert len(body["daily"]) == 30
    assert body["environment"] == "production"
    assert set(body) == {
        "from",
        "to",
        "environment",
        "as_of",
        "active",
        "mrr",
        "mrr_unpriced",
        "totals",
        "refunded",
        "daily",
        "one_time_revenue",
        "one_time_purchases",
        "one_time_unpriced",
        "one_time_daily",
    }
    assert body["daily"][0] == {
        "date": body["from"],
        "new": 0,
        "churned": 0,
        "trials_started": 0,
        "trials_converted": 0,
        "refunds": 0,
    }
    assert body["mrr"] == {"usd": 0}
    assert body["active"]["by_store"] == {"stripe": 0, "app_store": 0}
    assert body["one_time_revenue"] == {"usd": 0} and len(body["one_time_daily"]) == 30
    assert body["one_time_daily"][-1] == {"date": body["to"], "purchases": 0, "revenue": {}}


async def test_a_given_range_is_reported_day_by_day(client: httpx.AsyncClient) -> None:
    response = await client.get(PATH, params={"from": "2024-02-01", "to": "2024-03-01"}, headers=ADMIN)
    assert response.status_code == 200, response.text
    days = [day["date"] for day in response.json()["daily"]]
    assert (days[0], days[28], days[-1], len(days)) == ("2024-02-01", "2024-02-29", "2024-03-01", 30)
    only_to = (await client.get(PATH, params={"to": "2024-03-01"}, headers=ADMIN)).json()
    assert (only_to["from"], only_to["to"]) == ("2024-02-01", "2024-03-01")
    a_year = await client.get(PATH, params={"from": "2024-01-01", "to": "2024-12-31"}, headers=ADMIN)
    assert len(a_year.json()["daily"]) == 366


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"from": "2024-13-01"}, "invalid_date"),
        ({"to": "yesterday"}, "invalid_date"),
        ({"from": "20240101"}, "invalid_date"),
        ({"from": "2024-W01-1"}, "invalid_date"),
        ({"from": ""}, "invalid_date"),
        ({"from": "2024-03-02", "to": "2024-03-01"}, "invalid_date_range"),
        ({"from": "2199-01-01"}, "invalid_date_range"),
        ({"from": "2024-01-01", "to": "2025-01-01"}, "date_range_too_long"),
    ],
)
async def test_bad_dates_are_a_400_with_a_code(
    client: httpx.AsyncClient, params: dict[str, str], code: str
) -> None:
    response = await client.get(PATH, params=params, headers=ADMIN)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"].endswith(".")


async def test_the_route_is_documented_with_its_answer_and_errors(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operation = spec["paths"][PATH]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"from", "to", "environment"}
    [environment] = [p for p in operation["parameters"] if p["name"] == "environment"]
    assert environment["schema"]["default"] == "production"
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Summary"}
    summary = spec["components"]["schemas"]["Summary"]
    assert {"from", "to", "active", "mrr", "daily"} <= set(summary["properties"])
    assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "9999-12-31", "to": "9999-12-31"}, "from"),
        ({"to": "9999-12-31"}, "to"),
        ({"from": "0001-01-01", "to": "0001-01-01"}, "from"),
        ({"to": "0001-01-01"}, "to"),
    ],
)
async def test_days_at_the_ends_of_the_calendar_are_a_422_naming_the_field(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get(PATH, params=params, headers=ADMIN)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and f"`{field}`" in error["message"]
