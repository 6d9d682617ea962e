"""Unknown fields are refused, on routes that take a body and on those that take none.

A route with a body refuses fields its model does not name (`schemas.StrictBody`, extra="forbid"). A
route without one would ignore whatever it is sent: `{"immediately": true}` to a cancel was answered 200
and did something else than asked. `refuse_unread_body` runs before every JSON API route (the app
factory includes every API router with it) and, on a route that declares no body, refuses a body that
carries anything: 422 `invalid_request` naming the field. An empty body, `{}` and `null` carry nothing
and pass. Provider webhooks read their raw bytes themselves and are left alone; the hosted pages and
the dashboard read forms and are not included with it.
"""

from __future__ import annotations

from fastapi import Request

from entitle import untrusted_json
from entitle.errors import EntitleError, InvalidRequest

# Vendors sign the exact bytes they send; the route hands them to the provider unparsed.
RAW_BODY_PREFIX = "/webhooks/"
# Said of every route that declares no body, in its 422 answer and in the OpenAPI document.
NO_BODY = "this request takes no body"
UNKNOWN_FIELD = "Unknown field"
# A field name is echoed back to say what was wrong, not to mirror a body of any size.
_SHOWN_NAME = 80
_SHOWN_FIELDS = 20


def reads_raw_body(path: str) -> bool:
    return path.startswith(RAW_BODY_PREFIX)


def unknown_field_message(field: str, *, takes_body: bool = True) -> str:
    field = field[:_SHOWN_NAME]
    return f"Unknown field '{field}'." if takes_body else f"Unknown field '{field}': {NO_BODY}."


async def refuse_unread_body(request: Request) -> None:
    """Refuse a body with anything in it on a route that declares none (its body model refuses its own)."""
    route = request.scope.get("route")
    if getattr(route, "body_field", None) is not None or reads_raw_body(request.url.path):
        return
    raw = await request.body()
    if not raw.strip():
        return
    try:
        document = untrusted_json.loads(raw)
    except ValueError as exc:
        if _is_json(request):
            raise EntitleError("The request body is not valid JSON.", code="malformed_json") from exc
        raise _takes_no_body() from exc
    if document is None or document == {}:
        return
    if not isinstance(document, dict):
        raise _takes_no_body()
    fields = [name[:_SHOWN_NAME] for name in list(document)[:_SHOWN_FIELDS]]
    raise InvalidRequest(
        unknown_field_message(fields[0], takes_body=False),
        details=[{"field": field, "problem": UNKNOWN_FIELD} for field in fields],
    )


def _takes_no_body() -> InvalidRequest:
    return InvalidRequest(
        "This request takes no body; send none, or an empty JSON object.",
        details=[{"field": "", "problem": NO_BODY}],
    )


def _is_json(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")
