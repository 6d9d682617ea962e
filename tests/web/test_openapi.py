"""The OpenAPI document tells clients every error an operation can answer with, in the shape sent."""

from __future__ import annotations

import httpx


async def test_every_operation_declares_the_error_answers(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["components"]["schemas"]["Error"]["required"] == ["error"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    operations = [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]
    assert len(operations) > 30
    for path, method, operation in operations:
        responses = operation["responses"]
        for status in ("400", "401", "404", "409", "413", "414", "422", "429", "431", "503"):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    assert "Retry-After" in spec["paths"]["/v1/auth/login"]["post"]["responses"]["429"]["headers"]


async def test_a_405_allows_exactly_the_documented_methods(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in ("/v1/me/identities/apple", "/v1/me/identities/google"):
        documented = {method.upper() for method in spec["paths"][path]}
        refused = await client.get(path)
        assert refused.status_code == 405
        assert set(refused.headers["allow"].split(", ")) == documented == {"POST"}
        assert (await client.delete(path)).status_code == 405
