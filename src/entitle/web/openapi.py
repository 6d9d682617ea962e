"""The OpenAPI document, with the error answers every route can give.

FastAPI documents only successes and its own 422 shape, which entitle never sends (`web.errors` turns
every failure into `{"error": {"code", "message"}}`). The document is completed here, once, so clients
generated from it (and the schema-driven tests in CI) know every status an operation may answer with.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from entitle.web.bodies import NO_BODY, reads_raw_body
from entitle.web.server import MAX_HEADER_BYTES, MAX_HEADER_COUNT, MAX_URL_BYTES

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable, machine-readable."},
                "message": {"type": "string", "description": "One sentence for a person."},
                "details": {"description": "Per-field problems, for invalid_request."},
            },
        }
    },
}

# Every status an operation may answer with besides its success; 503 names the missing setting.
ERRORS = {
    "400": "Malformed request (`malformed_json`, a body nested too deep, a refused webhook signature).",
    "401": "Missing, expired or invalid access token or server key.",
    "403": "Signed in, but not allowed.",
    "404": "Nothing with this id, or nothing at this path.",
    "408": "The request body did not arrive in time.",
    "409": "Conflicts with the current state (`already_subscribed`, a concurrent change, ...).",
    "413": "The request body is larger than ENTITLE_MAX_BODY_BYTES.",
    "414": f"The URL is longer than {MAX_URL_BYTES} bytes (`uri_too_long`).",
    "422": "Wrong, missing or unknown fields (`invalid_request`, with `details`; naming an unknown field).",
    "429": "Rate limited; `Retry-After` says when to try again.",
    "431": f"The request line and headers exceed {MAX_HEADER_BYTES} bytes or {MAX_HEADER_COUNT} fields "
    "(`request_headers_too_large`).",
    "503": "A provider is not configured (the message names the setting) or did not answer.",
}

# What `web.bodies` answers on an operation that declares no body.
NO_BODY_422 = (
    f"Wrong query parameters, or a body with a field: {NO_BODY} (`invalid_request`, naming the field; "
    "an empty body or `{}` is accepted)."
)


def _error_response(description: str, status: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if status == "429":
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}}
    return response


def complete_openapi(app: FastAPI) -> dict[str, Any]:
    """Build the document once: FastAPI's, plus the error answers on every operation."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            for status, description in ERRORS.items():
                responses[status] = _error_response(description, status)
            if "requestBody" not in operation and not reads_raw_body(path):
                responses["422"] = _error_response(NO_BODY_422, "422")
    app.openapi_schema = schema
    return schema


def install_openapi(app: FastAPI) -> None:
    app.openapi = lambda: complete_openapi(app)  # type: ignore[method-assign]
