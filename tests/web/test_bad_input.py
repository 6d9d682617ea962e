"""Whatever a client sends, the answer is a 4xx with a code and a sentence, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import bearer, register


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and len(error["message"]) > 10


async def test_malformed_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/register",
        content=b'{"email": "a@b.co", "password": ',
        headers={"content-type": "application/json"},
    )
    assert_error(response, 400, "malformed_json")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "ada@example.com"},
        {"password": "long enough password"},
        {"email": 42, "password": "long enough password"},
        {"email": ["ada@example.com"], "password": "long enough password"},
        {"email": "ada@example.com", "password": None},
        {"email": "not-an-email", "password": "long enough password"},
        {"email": "ada@@example.com", "password": "long enough password"},
        {"email": "ada@example.com", "password": "short"},
        {"email": "ada@example.com", "password": "x" * 5000},
        {"email": "ada@example.com", "password": "long enough password", "admin": True},
        [],
        "a string",
        None,
    ],
)
async def test_register_validates_every_field(client: httpx.AsyncClient, body: object) -> None:
    response = await client.post("/v1/auth/register", json=body)
    assert_error(response, 422, "invalid_request")
    assert response.json()["error"]["details"]


async def test_short_password_says_why(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/register", json={"email": "ada@example.com", "password": "short"})
    assert "password" in response.json()["error"]["message"]


async def test_non_json_content_type(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/login",
        content=b"email=a&password=b",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code in (400, 415, 422)
    assert response.json()["error"]["code"]


async def test_oversized_body_is_refused(client: httpx.AsyncClient) -> None:
    big = b'{"email": "ada@example.com", "password": "' + b"x" * 300_000 + b'"}'
    response = await client.post(
        "/v1/auth/register", content=big, headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


async def test_oversized_chunked_body_is_refused(client: httpx.AsyncClient) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 10_000

    response = await client.post(
        "/v1/auth/register", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


async def test_unknown_path_and_wrong_method(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(await client.get("/v1/auth/login"), 405, "method_not_allowed")


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=10000", "limit=abc", "offset=-1", "type=DROP%20TABLE", "type=" + "a" * 100],
)
async def test_event_log_query_is_validated(client: httpx.AsyncClient, query: str) -> None:
    session = await register(client)
    assert_error(await client.get(f"/v1/me/events?{query}", headers=bearer(session)), 422, "invalid_request")


@pytest.mark.parametrize(
    "header", ["Bearer", "Basic abc", "Bearer    ", "bearer a.b.c", "Bearer " + "x" * 5000]
)
async def test_bad_authorization_headers(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get("/v1/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"]["code"] in {"missing_token", "invalid_token"}


async def test_openapi_and_docs_are_served(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/auth/register" in spec["paths"]
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/webhook-endpoints", {"GET", "POST"}),
        ("DELETE", "/v1/catalog", {"GET"}),
        ("PATCH", "/v1/me", {"GET", "DELETE"}),
        ("GET", "/v1/auth/register", {"POST"}),
        ("PUT", "/v1/billing/stripe/portal", {"GET", "POST"}),
    ],
)
async def test_a_wrong_method_is_a_405_naming_the_allowed_ones(
    client: httpx.AsyncClient, method: str, path: str, allowed: set[str]
) -> None:
    response = await client.request(method, path)
    assert_error(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
