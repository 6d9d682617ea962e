"""One error shape for every failure: `{"error": {"code", "message"}}` with a 4xx status.

FastAPI's own validation errors, Starlette's 404/405 and malformed JSON are translated here too, so a
client never sees a different shape; anything unexpected becomes a 500 with a code and no internals.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import IntegrityError, StatementError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from entitle.errors import EntitleError, RateLimited
from entitle.web.bodies import UNKNOWN_FIELD, unknown_field_message
from entitle.web.pages.rendering import page_error
from entitle.web.pages.sentences import customer_sentence

log = logging.getLogger(__name__)

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status)


# The hosted pages and the dashboard: a person reads their errors, so they get a page, not JSON.
PAGE_PREFIXES = ("/pricing", "/account", "/checkout", "/admin")


def is_page(request: Request) -> bool:
    path = request.url.path
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PAGE_PREFIXES)


async def _entitle_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EntitleError)
    response: Response
    if is_page(request):
        # The dashboard's readers run the server; a customer page never names a setting.
        admin = request.url.path == "/admin" or request.url.path.startswith("/admin/")
        response = page_error(request, exc.status_code, exc.message if admin else customer_sentence(exc))
    else:
        response = JSONResponse(exc.to_body(), status_code=exc.status_code)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return error_response(400, "malformed_json", "The request body is not valid JSON.")
    details = [
        {
            "field": ".".join(str(part) for part in error.get("loc", ()) if part != "body"),
            "problem": UNKNOWN_FIELD if error.get("type") == "extra_forbidden" else error.get("msg"),
        }
        for error in errors
    ]
    # An unknown field is named first: it is most often a typo, and the missing field it stands for
    # is then the second thing to read.
    unknown = next((detail for detail in details if detail["problem"] == UNKNOWN_FIELD), None)
    if unknown is not None:
        return error_response(422, "invalid_request", unknown_field_message(unknown["field"]), details)
    first = details[0] if details else {"field": "", "problem": "invalid"}
    where = f"`{first['field']}`" if first["field"] else "the request"
    message = f"{where}: {first['problem']}."
    return error_response(422, "invalid_request", message, details)


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first matching route's)."""

    def served(method: str) -> bool:
        # A fresh scope: the request's own carries the routing state of the route that refused it.
        scope = {
            "type": "http",
            "path": request.scope["path"],
            "root_path": "",
            "method": method,
            "headers": [],
        }
        return any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes)

    return ", ".join(method for method in _METHODS if served(method))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else "The request could not be served."
    if exc.status_code == 404:
        message = "There is nothing at this path."
    response: Response
    if is_page(request) and exc.status_code != 405:
        response = page_error(request, exc.status_code, message)
    else:
        response = error_response(exc.status_code, code, message)
    # 408's Connection: close.
    response.headers.update(exc.headers or {})
    if exc.status_code == 405:
        response.headers["Allow"] = allowed_methods(request)
    return response


async def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    # Two requests raced to create the same thing (a double-tapped sign-in, two registrations): the
    # database's unique constraint decided, and the loser is told to look again, not handed a 500.
    log.info("unique constraint decided a race: %s", exc.__class__.__name__)
    return error_response(
        409, "concurrent_change", "Another request changed this at the same moment; try again."
    )


async def _statement_error(request: Request, exc: Exception) -> Response:
    # A column type refused a value while binding it (entitle.storable_text: NUL, excess length); SQLAlchemy
    # wraps what the type raised. Any other database error is unexpected.
    assert isinstance(exc, StatementError)
    if isinstance(exc.orig, EntitleError):
        return await _entitle_error(request, exc.orig)
    return await _unexpected(request, exc)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "Something went wrong on our side; it has been logged.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EntitleError, _entitle_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(StatementError, _statement_error)
    app.add_exception_handler(Exception, _unexpected)
