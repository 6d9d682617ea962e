"""Unknown fields are refused: a route that takes no body refuses one with fields, a route with a body
refuses the fields it does not know, and either answer names the field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import bearer, register


def assert_unknown_field(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert f"Unknown field '{field}'" in error["message"]
    assert {"field": field, "problem": "Unknown field"} in error["details"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/auth/logout"),
        ("POST", "/v1/me/stream-tickets"),
        ("POST", "/v1/me/email/verification"),
        ("GET", "/v1/me"),
        ("DELETE", "/v1/me"),
    ],
)
async def test_a_route_without_a_body_refuses_one_with_a_field(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    session = await register(client)
    response = await client.request(method, path, json={"everywhere": True}, headers=bearer(session))
    assert_unknown_field(response, "everywhere")
    assert response.json()["error"]["message"] == ("Unknown field 'everywhere': this request takes no body.")
    # Refused before anything was done: the session is still there.
    assert (await client.get("/v1/me", headers=bearer(session))).status_code == 200


async def test_every_field_is_listed(client: httpx.AsyncClient) -> None:
    session = await register(client)
    response = await client.post(
        "/v1/auth/logout", json={"everywhere": True, "reason": "x"}, headers=bearer(session)
    )
    assert_unknown_field(response, "everywhere")
    assert [detail["field"] for detail in response.json()["error"]["details"]] == ["everywhere", "reason"]


@pytest.mark.parametrize(
    "request_body",
    [
        {},
        {"content": b""},
        {"content": b"  \n"},
        {"json": {}},
        {"json": None},
        {"content": b"{}", "headers": {"content-type": "text/plain"}},
    ],
)
async def test_no_body_or_an_empty_one_is_accepted(
    client: httpx.AsyncClient, request_body: dict[str, Any]
) -> None:
    session = await register(client)
    headers = {**bearer(session), **request_body.pop("headers", {})}
    response = await client.post("/v1/me/stream-tickets", headers=headers, **request_body)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{", "application/json", 400, "malformed_json"),
        (b"\xff\xfe\x00", "application/json", 400, "malformed_json"),
        (b"[" * 100_000, "application/json", 400, "malformed_json"),
        (b"[]", "application/json", 422, "invalid_request"),
        (b'"cancel"', "application/json", 422, "invalid_request"),
        (b"true", "application/json", 422, "invalid_request"),
        (b"everywhere=true", "application/x-www-form-urlencoded", 422, "invalid_request"),
        (b"\x00\x01binary", "application/octet-stream", 422, "invalid_request"),
        (b"hello", "text/plain", 422, "invalid_request"),
    ],
)
async def test_anything_else_sent_to_a_route_without_a_body_is_a_clear_refusal(
    client: httpx.AsyncClient, content: bytes, content_type: str, status: int, code: str
) -> None:
    session = await register(client)
    response = await client.post(
        "/v1/auth/logout", content=content, headers={**bearer(session), "content-type": content_type}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and len(error["message"]) > 10
    assert (await client.get("/v1/me", headers=bearer(session))).status_code == 200


async def test_a_field_sent_as_json_without_saying_so_is_still_named(client: httpx.AsyncClient) -> None:
    # `curl -d '{"everywhere": true}'` says application/x-www-form-urlencoded.
    session = await register(client)
    response = await client.post(
        "/v1/auth/logout",
        content=b'{"everywhere": true}',
        headers={**bearer(session), "content-type": "application/x-www-form-urlencoded"},
    )
    assert_unknown_field(response, "everywhere")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/v1/auth/register",
            {"email": "ada@example.com", "password": "long enough password", "admin": True},
            "admin",
        ),
        # A typo: the unknown field is named first, not the required field it stands for.
        ("/v1/auth/login", {"emial": "ada@example.com", "password": "long enough password"}, "emial"),
        ("/v1/auth/refresh", {"refresh_token": "x", "rotate": False}, "rotate"),
        ("/v1/auth/google", {"id_token": "x", "nonce": "n"}, "nonce"),
    ],
)
async def test_a_route_with_a_body_names_the_unknown_field(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    response = await client.post(path, json=body)
    assert_unknown_field(response, field)
    assert response.json()["error"]["message"] == f"Unknown field '{field}'."


async def test_other_validation_errors_keep_their_sentence(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/register", json={"email": "ada@example.com", "password": "short"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["message"].startswith("`password`: ")
    assert error["details"][0]["field"] == "password"


async def test_a_long_field_name_is_not_echoed_whole(client: httpx.AsyncClient) -> None:
    session = await register(client)
    name = "x" * 10_000
    response = await client.post("/v1/auth/logout", json={name: 1}, headers=bearer(session))
    assert response.status_code == 422
    assert len(response.json()["error"]["message"]) < 200


async def test_provider_webhooks_still_read_their_raw_body(client: httpx.AsyncClient) -> None:
    # Not configured here: the refusal is the webhook's own, not an unknown field.
    response = await client.post("/webhooks/stripe", json={"id": "evt_1", "type": "invoice.paid"})
    assert response.json()["error"]["code"] != "invalid_request"
