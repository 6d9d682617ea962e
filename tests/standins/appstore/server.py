"""A local App Store Server API: the endpoints entitle calls, speaking Apple's wire format.

Send Consumption Information (v2, and the deprecated v1) is accepted with 202 as Apple does and what was
sent is kept in `state.consumption_sent` for assertions. Request a Test Notification answers a token and
POSTs a signed `TEST` notification to `state.notification_url`; Get Test Notification Status reports
that attempt, and Get Transaction History answers 4040010 for an id it does not know.

It checks the ES256 bearer token the official client library sends (key id in the header; issuer,
audience `appstoreconnect-v1`, bundle id `bid`, expiry in the claims), answers 401 with no body when it
is wrong as Apple does, and can be told to answer 429 (errorCode 4290000) for the next N requests.
Responses are signed at request time with the test chain, like the real API's. With `limits` it answers
as late as Apple and enforces per-endpoint rate limits (429 with a `Retry-After` in UNIX milliseconds,
as Apple documents); `state.limits.stats` counts requests and 429s per endpoint.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..limits import VendorLimits
from .history import Notification
from .signing import AppStoreSigner

TRANSACTION_NOT_FOUND = {"errorCode": 4040010, "errorMessage": "Transaction id not found."}
RATE_LIMITED = {"errorCode": 4290000, "errorMessage": "Rate limit exceeded."}
BAD_REQUEST = {"errorCode": 4000000, "errorMessage": "Invalid request."}
TEST_NOTIFICATION_NOT_FOUND = {"errorCode": 4040008, "errorMessage": "Test notification not found."}


@dataclass
class SubscriptionRecord:
    status: int
    transaction: dict[str, Any]
    renewal_info: dict[str, Any]


@dataclass
class HistoryEntry:
    signed_payload: str
    signed_date: int
    original_transaction_id: str | None
    notification_type: str
    delivered: bool


@dataclass
class AppStoreServerState:
    """What the stand-in knows; tests fill it directly or from a simulator's notifications."""

    signer: AppStoreSigner
    issuer_id: str
    key_id: str
    api_public_key: ec.EllipticCurvePublicKey
    page_size: int = 20
    subscriptions: dict[str, SubscriptionRecord] = field(default_factory=dict)
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    notifications: list[HistoryEntry] = field(default_factory=list)
    # Answer 429 to this many of the next requests (after authentication), then serve normally.
    rate_limit_next: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)
    tokens_set: list[tuple[str, str]] = field(default_factory=list)
    # (transactionId, JSON body, path version "v1"/"v2") of every Send Consumption Information accepted.
    consumption_sent: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    # Latency and rate limits, by endpoint ("GET /inApps/v1/subscriptions/{transactionId}").
    limits: VendorLimits = field(default_factory=VendorLimits)
    # Where Request a Test Notification POSTs its TEST notification (App Store Connect's "Production
    # Server URL"); None answers the request but records the attempt as NO_RESPONSE, as Apple does.
    notification_url: str | None = None
    # testNotificationToken -> the signed TEST notification and Apple's record of sending it.
    test_notifications: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)

    def put_subscription(
        self, status: int, transaction: dict[str, Any], renewal_info: dict[str, Any]
    ) -> None:
        original = str(transaction["originalTransactionId"])
        self.subscriptions[original] = SubscriptionRecord(status, dict(transaction), dict(renewal_info))
        self.transactions[str(transaction["transactionId"])] = dict(transaction)

    def record(self, note: Notification, *, delivered: bool = True) -> None:
        """Take in a simulated notification: it becomes current truth and part of the notification history."""
        self.put_subscription(note.status, note.transaction, note.renewal_info)
        self.notifications.append(
            HistoryEntry(
                signed_payload=note.signed_payload,
                signed_date=note.signed_date,
                original_transaction_id=str(note.transaction["originalTransactionId"]),
                notification_type=note.notification_type,
                delivered=delivered,
            )
        )

    def record_one_time(self, note: Notification, *, delivered: bool = True) -> None:
        """Take in a one-time purchase's notification: its transaction becomes what Get Transaction Info
        answers, and the notification part of the history."""
        self.transactions[str(note.transaction["transactionId"])] = dict(note.transaction)
        self.notifications.append(
            HistoryEntry(
                signed_payload=note.signed_payload,
                signed_date=note.signed_date,
                original_transaction_id=str(note.transaction["originalTransactionId"]),
                notification_type=note.notification_type,
                delivered=delivered,
            )
        )

    def original_of(self, any_transaction_id: str) -> str | None:
        if any_transaction_id in self.subscriptions:
            return any_transaction_id
        transaction = self.transactions.get(any_transaction_id)
        return str(transaction["originalTransactionId"]) if transaction else None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _resigned(state: AppStoreServerState, payload: dict[str, Any]) -> str:
    # The real API signs each answer when it is asked, so signedDate is "now" (never older than the data).
    return state.signer.sign({**payload, "signedDate": max(_now_ms(), int(payload.get("signedDate", 0)))})


def create_app(state: AppStoreServerState) -> Starlette:
    def authorize(request: Request) -> Response | None:
        state.requests.append((request.method, request.url.path))
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            return Response(status_code=401)
        token = header.removeprefix("Bearer ")
        try:
            if jwt.get_unverified_header(token).get("kid") != state.key_id:
                return Response(status_code=401)
            claims = jwt.decode(
                token,
                state.api_public_key,
                algorithms=["ES256"],
                audience="appstoreconnect-v1",
                issuer=state.issuer_id,
                options={"require": ["exp", "iss", "aud", "bid"]},
            )
        except jwt.PyJWTError:
            return Response(status_code=401)
        if claims.get("bid") != state.signer.bundle_id:
            return Response(status_code=401)
        if state.rate_limit_next > 0:
            state.rate_limit_next -= 1
            return JSONResponse(RATE_LIMITED, status_code=429)
        return None

    async def subscription_statuses(request: Request) -> Response:
        if (denied := authorize(request)) is not None:
            return denied
        original = state.original_of(request.path_params["transaction_id"])
        if original is None:
            return JSONResponse(TRANSACTION_NOT_FOUND, status_code=404)
        record = state.subscriptions[original]
        item = {
            "originalTransactionId": original,
            "status": record.status,
            "signedTransactionInfo": _resigned(state, record.transaction),
            "signedRenewalInfo": _resigned(state, record.renewal_info),
        }
        group = record.transaction.get("subscriptionGroupIdentifier", "21000001")
        return JSONResponse(
            {
                "environment": state.signer.environment,
                "bundleId": state.signer.bundle_id,
                "appAppleId": state.signer.app_apple_id,
                "data": [{"subscriptionGroupIdentifier": group, "lastTransactions": [item]}],
            }
        )

    async def transaction_info(request: Request) -> Response:
        if (denied := authorize(request)) is not None:
            return denied
        transaction = state.transactions.get(request.path_params["transaction_id"])
        if transaction is None:
            return JSONResponse(TRANSACTION_NOT_FOUND, status_code=404)
        return JSONResponse({"signedTransactionInfo": _resigned(state, transaction)})

    async def notification_history(request: Request) -> Response:
        if (denied := authorize(request)) is not None:
            return denied
        try:
            body = await request.json()
            start, end = int(body["startDate"]), int(body["endDate"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse(BAD_REQUEST, status_code=400)
        wanted = body.get("transactionId")
        wanted_original = state.original_of(str(wanted)) if wanted else None
        matches = [
            entry
            for entry in sorted(state.notifications, key=lambda e: e.signed_date)
            if start <= entry.signed_date < end
            and (wanted is None or entry.original_transaction_id == wanted_original)
            and (body.get("notificationType") in (None, entry.notification_type))
            and not (body.get("onlyFailures") and entry.delivered)
        ]
        token = request.query_params.get("paginationToken")
        try:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        except ValueError:
            return JSONResponse(BAD_REQUEST, status_code=400)
        page = matches[offset : offset + state.page_size]
        has_more = offset + state.page_size < len(matches)
        answer: dict[str, Any] = {
            "hasMore": has_more,
            "notificationHistory": [
                {
                    "signedPayload": entry.signed_payload,
                    "sendAttempts": [
                        {
                            "attemptDate": entry.signed_date,
                            "sendAttemptResult": "SUCCESS" if entry.delivered else "NO_RESPONSE",
                        }
                    ],
                }
                for entry in page
            ],
        }
        if has_more:
            answer["paginationToken"] = base64.urlsafe_b64encode(
                str(offset + state.page_size).encode()
            ).decode()
        return JSONResponse(answer)

    async def set_app_account_token(request: Request) -> Response:
        if (denied := authorize(request)) is not None:
            return denied
        original = request.path_params["original_transaction_id"]
        record = state.subscriptions.get(original)
        if record is None:
            return JSONResponse(TRANSACTION_NOT_FOUND, status_code=404)
        try:
            token = str(uuid.UUID(str((await request.json())["appAccountToken"])))
        except (ValueError, KeyError, TypeError):
            return JSONResponse(BAD_REQUEST, status_code=400)
        record.transaction["appAccountToken"] = token
        record.renewal_info["appAccountToken"] = token
        state.transactions[str(record.transaction["transactionId"])] = dict(record.transaction)
        state.tokens_set.append((original, token))
        return Response(status_code=200)

    def consumption(version: str) -> Callable[[Request], Awaitable[Response]]:
        async def send(request: Request) -> Response:
            if (denied := authorize(request)) is not None:
                return denied
            transaction_id = request.path_params["transaction_id"]
            if transaction_id not in state.transactions:
                return JSONResponse(TRANSACTION_NOT_FOUND, status_code=404)
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse(BAD_REQUEST, status_code=400)
            required = ("customerConsented", "sampleContentProvided", "deliveryStatus")
            if not isinstance(body, dict) or any(key not in body for key in required):
                return JSONResponse(BAD_REQUEST, status_code=400)
            state.consumption_sent.append((transaction_id, body, version))
            return Response(status_code=202)

        return send

    async def transaction_history(request: Request) -> Response:
        # Get Transaction History (v2): entitle only asks it with a made-up id, to prove a key works.
        if (denied := authorize(request)) is not None:
            return denied
        original = state.original_of(request.path_params["transaction_id"])
        if original is None:
            return JSONResponse(TRANSACTION_NOT_FOUND, status_code=404)
        signed = [
            _resigned(state, transaction)
            for transaction in state.transactions.values()
            if str(transaction["originalTransactionId"]) == original
        ]
        return JSONResponse(
            {
                "revision": base64.urlsafe_b64encode(str(len(signed)).encode()).decode(),
                "hasMore": False,
                "bundleId": state.signer.bundle_id,
                "appAppleId": state.signer.app_apple_id,
                "environment": state.signer.environment,
                "signedTransactions": signed,
            }
        )

    async def request_test_notification(request: Request) -> Response:
        # Apple answers the token at once and sends the TEST notification to the app's server URL;
        # this stand-in sends it before answering, so the status is known when the token is.
        if (denied := authorize(request)) is not None:
            return denied
        token = f"{uuid.uuid4()}_{_now_ms()}"
        signed = state.signer.signed_notification("TEST", signed_date=_now_ms())
        attempt = {"attemptDate": _now_ms(), "sendAttemptResult": await _send(signed)}
        state.test_notifications[token] = (signed, attempt)
        return JSONResponse({"testNotificationToken": token})

    async def _send(signed: str) -> str:
        if state.notification_url is None:
            return "NO_RESPONSE"
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.post(state.notification_url, json={"signedPayload": signed})
        except httpx.TimeoutException:
            return "TIMED_OUT"
        except httpx.HTTPError:
            return "SOCKET_ISSUE"
        return "SUCCESS" if 200 <= answer.status_code < 300 else "UNSUCCESSFUL_HTTP_RESPONSE_CODE"

    async def test_notification_status(request: Request) -> Response:
        if (denied := authorize(request)) is not None:
            return denied
        found = state.test_notifications.get(request.path_params["token"])
        if found is None:
            return JSONResponse(TEST_NOTIFICATION_NOT_FOUND, status_code=404)
        signed, attempt = found
        return JSONResponse({"signedPayload": signed, "sendAttempts": [attempt]})

    def limited(method: str, path: str, handler: Callable[[Request], Awaitable[Response]]) -> Route:
        # Apple's documented path templates name the endpoints; Starlette's parameters are snake_case.
        name = f"{method} {path}"
        route_path = (
            path.replace("{transactionId}", "{transaction_id}")
            .replace("{originalTransactionId}", "{original_transaction_id}")
            .replace("{testNotificationToken}", "{token}")
        )

        async def call(request: Request) -> Response:
            refusal = state.limits.admit(name)
            await state.limits.answer_later()
            if refusal is not None:
                retry_at = _now_ms() + math.ceil(refusal.retry_after * 1000)
                return JSONResponse(RATE_LIMITED, status_code=429, headers={"Retry-After": str(retry_at)})
            response = await handler(request)
            if response.status_code == 429:
                state.limits.refused(name)
            return response

        return Route(route_path, call, methods=[method])

    return Starlette(
        routes=[
            limited("GET", "/inApps/v1/subscriptions/{transactionId}", subscription_statuses),
            limited("GET", "/inApps/v1/transactions/{transactionId}", transaction_info),
            limited("POST", "/inApps/v1/notifications/history", notification_history),
            limited(
                "PUT",
                "/inApps/v1/transactions/{originalTransactionId}/appAccountToken",
                set_app_account_token,
            ),
            limited("PUT", "/inApps/v2/transactions/consumption/{transactionId}", consumption("v2")),
            limited("PUT", "/inApps/v1/transactions/consumption/{transactionId}", consumption("v1")),
            limited("GET", "/inApps/v2/history/{transactionId}", transaction_history),
            limited("POST", "/inApps/v1/notifications/test", request_test_notification),
            limited("GET", "/inApps/v1/notifications/test/{testNotificationToken}", test_notification_status),
        ]
    )


def new_state(signer: AppStoreSigner, **kwargs: Any) -> tuple[AppStoreServerState, bytes]:
    """A stand-in state with a fresh App Store Connect API key; returns the key's PEM for the client."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    state = AppStoreServerState(
        signer=signer,
        issuer_id=kwargs.pop("issuer_id", "57246542-96fe-1a63-e053-0824d011072a"),
        key_id=kwargs.pop("key_id", "2X9R4HXF34"),
        api_public_key=key.public_key(),
        **kwargs,
    )
    return state, pem


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port in a thread; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("stand-in server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
