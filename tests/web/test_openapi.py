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
        for status in ("400", "401", "404", "409", "413", "422", "429", "503"):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    assert "Retry-After" in spec["paths"]["/v1/auth/login"]["post"]["responses"]["429"]["headers"]
