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


async def test_the_document_says_unknown_fields_are_refused(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    bodies = 0
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            unprocessable = operation["responses"]["422"]["description"]
            if "requestBody" in operation:
                bodies += 1
                for media in operation["requestBody"]["content"].values():
                    # An optional body is `anyOf: [{$ref}, {type: null}]`.
                    refs = [media["schema"], *media["schema"].get("anyOf", [])]
                    names = [ref["$ref"].rsplit("/", 1)[-1] for ref in refs if "$ref" in ref]
                    assert names, (method, path)
                    for name in names:
                        assert schemas[name]["additionalProperties"] is False, (method, path, name)
                assert "unknown fields" in unprocessable, (method, path)
            elif not path.startswith("/webhooks/"):
                assert "takes no body" in unprocessable, (method, path)
    assert bodies > 10
    logout = spec["paths"]["/v1/auth/logout"]["post"]["responses"]["422"]["description"]
    assert "a body with a field" in logout


async def test_a_405_allows_exactly_the_documented_methods(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in ("/v1/me/identities/apple", "/v1/me/identities/google"):
        documented = {method.upper() for method in spec["paths"][path]}
        refused = await client.get(path)
        assert refused.status_code == 405
        assert set(refused.headers["allow"].split(", ")) == documented == {"POST"}
        assert (await client.delete(path)).status_code == 405
