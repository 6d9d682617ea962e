"""The HTTP face: auth, form decoding, idempotency replay, latency and rate limits (see `limits`),
injected 429s, and the uvicorn thread."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..limits import VendorLimits
from . import billing, catalog, checkout, customers, events, hosted, payments, promotions, subscriptions, tax
from .state import State
from .wire import StandinError, decode_form, new_id

Handler = Callable[..., dict[str, Any]]
ROUTES: list[tuple[str, str, Handler]] = [
    *customers.ROUTES,
    *catalog.ROUTES,
    *subscriptions.ROUTES,
    *billing.ROUTES,
    *payments.ROUTES,
    *checkout.ROUTES,
    *promotions.ROUTES,
    *events.ROUTES,
    *tax.ROUTES,
]


ACCOUNT_ID = "acct_1StandinAccount0"
RATE_LIMITED = (
    "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."
)


def build_app(state: State, limits: VendorLimits | None = None) -> Starlette:
    limits = limits or VendorLimits()

    def endpoint(handler: Handler, name: str) -> Callable[[Request], Any]:
        async def call(request: Request) -> Response:
            body = await request.body()
            return _dispatch(state, handler, request, body, limits, name)

        return call

    grouped: dict[str, dict[str, Handler]] = {}
    for method, path, handler in ROUTES:
        grouped.setdefault(path, {})[method] = handler

    def route_for(path: str, handlers: dict[str, Handler]) -> Route:
        async def call(request: Request) -> Response:
            # Stripe counts each method and path template as one endpoint, whatever the object id.
            name = f"{request.method} {path}"
            refusal = limits.admit(name)
            await limits.answer_later()
            if refusal is not None:
                return _error(
                    StandinError(429, RATE_LIMITED, code="rate_limit"),
                    {"Stripe-Rate-Limited-Reason": refusal.reason},
                )
            handler = handlers.get(request.method)
            if handler is None or (request.method, path) in state.unimplemented:
                return _error(
                    StandinError(
                        404, f"Unrecognized request URL ({request.method}: {path}).", code="not_found"
                    )
                )
            return await endpoint(handler, name)(request)  # type: ignore[no-any-return]

        return Route(path, call, methods=["GET", "POST", "DELETE"])

    async def not_found(request: Request, exc: Exception) -> Response:
        return _error(
            StandinError(
                404, f"Unrecognized request URL ({request.method}: {request.url.path}).", code="not_found"
            )
        )

    pages = hosted.routes(state)  # the hosted Checkout page, for browsers: no key, no rate limit
    app = Starlette(
        routes=[*[route_for(p, h) for p, h in grouped.items()], *pages], exception_handlers={404: not_found}
    )
    return app


def _dispatch(
    state: State, handler: Handler, request: Request, body: bytes, limits: VendorLimits, name: str
) -> Response:
    key = request.headers.get("authorization", "").removeprefix("Bearer ")
    grant = state.keys.get(key)
    if grant is None:
        return _error(StandinError(401, f"Invalid API Key provided: {masked(key)}"))
    permission = permission_for(name)
    if grant.permissions is not None and permission not in grant.permissions:
        return _error(
            StandinError(
                403,
                f"The provided key '{masked(key)}' does not have the required permissions for this "
                f"endpoint on account '{ACCOUNT_ID}'. Having the '{permission}' permission would allow "
                "this request to continue.",
            )
        )
    try:
        pairs = parse_qsl(request.url.query, keep_blank_values=True)
        if body:
            if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                raise StandinError(400, "Invalid request: Stripe expects application/x-www-form-urlencoded.")
            pairs += parse_qsl(body.decode(), keep_blank_values=True)
        params = decode_form(pairs)
    except StandinError as exc:
        return _error(exc)
    if state.refuse_expand and any(name.startswith("expand") for name in params):
        return _error(
            StandinError(400, "Received unknown parameter: expand", code="parameter_unknown", param="expand")
        )
    key = request.headers.get("idempotency-key")
    with state.lock:
        state.request_livemode = grant.livemode
        state.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "params": params,
                "stripe_version": request.headers.get("stripe-version"),
                "idempotency_key": key,
            }
        )
        if state.rate_limit_next > 0:
            state.rate_limit_next -= 1
            limits.refused(name)
            retry_after = state.rate_limit_retry_after
            headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
            return _error(StandinError(429, RATE_LIMITED, code="rate_limit"), headers)
        fingerprint = hashlib.sha256(
            f"{request.method} {request.url.path} {json.dumps(params, sort_keys=True)}".encode()
        ).hexdigest()
        if request.method == "POST" and key and key in state.idempotency:
            seen, status, payload = state.idempotency[key]
            if seen != fingerprint:
                return _error(
                    StandinError(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters they were "
                        "first used with. Try using a key other than '"
                        + key
                        + "' if you meant to execute a different "
                        "request.",
                        type="idempotency_error",
                    )
                )
            return JSONResponse(payload, status, headers={"Idempotent-Replayed": "true"})
        try:
            status, payload = 200, handler(state, params, **request.path_params)
        except StandinError as exc:
            status, payload = exc.status, exc.body
        # Stripe saves the result of a request that ran, errors included, but not a 429 or a 5xx.
        if request.method == "POST" and key and status < 500:
            state.idempotency[key] = (fingerprint, status, payload)
    return JSONResponse(payload, status, headers={"Request-Id": new_id("req", 14)})


def masked(key: str) -> str:
    """A key as Stripe quotes it back: its prefix and last four, the rest starred."""
    prefix = key[:8] if key[:3] in ("sk_", "rk_", "pk_") and key[3:8] in ("test_", "live_") else ""
    hidden = max(0, len(key) - len(prefix) - 4)
    return prefix + "*" * hidden + key[len(prefix) + hidden :]


# The permission a restricted key needs for an endpoint, named as Stripe's 403 names it.
_RESOURCES = {"checkout": "checkout_session", "webhook_endpoints": "webhook", "balance": "balance"}


def permission_for(endpoint: str) -> str:
    """`rak_customer_read` for "GET /v1/customers/{id}"."""
    method, path = endpoint.split(" ", 1)
    segment = path.split("/")[2]
    resource = _RESOURCES.get(segment, segment.removesuffix("s"))
    return f"rak_{resource}_{'read' if method == 'GET' else 'write'}"


def _error(exc: StandinError, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(exc.body, exc.status, headers={"Request-Id": new_id("req", 14), **(headers or {})})


class ServerThread:
    """Runs an ASGI app under uvicorn on a loopback port chosen by the OS."""

    def __init__(self, app: Starlette) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="stripe-standin", daemon=True)
        self.port = 0

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the Stripe stand-in did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
