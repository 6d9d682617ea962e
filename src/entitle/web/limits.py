"""Limits on request bodies: their size (BodySizeLimit) and the time to receive them (BodyReadTimeout)."""

from __future__ import annotations

import asyncio
import json
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    """Pure ASGI middleware over the request body size.

    With a Content-Length the decision is made from the header alone. A chunked body (no length) is read
    here up to the limit and replayed to the app, so memory stays bounded by the limit and the app never
    sees a body it would have to abandon half-way.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((value for name, value in scope.get("headers", ()) if name == b"content-length"), None)
        if length is not None:
            if not length.isdigit() or int(length) > self.max_bytes:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)
            return
        buffered: list[Message] = []
        size = 0
        while True:
            message = await receive()
            buffered.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        message = f"The request body is larger than {self.max_bytes} bytes."
        body = json.dumps({"error": {"code": "payload_too_large", "message": message}}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            # The body is left unread: the connection cannot carry another request after it.
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class BodyTooSlow(HTTPException):  # noqa: N818  (named for what happened)
    """Raised from `receive`: an HTTPException, so FastAPI's body parsing lets it through unchanged."""

    def __init__(self, seconds: float) -> None:
        super().__init__(
            408,
            f"The request body did not arrive within {seconds:g} seconds.",
            # uvicorn closes the connection after a response that says so: the rest of the body is junk.
            headers={"Connection": "close"},
        )


class BodyReadTimeout:
    """Pure ASGI middleware: the whole request body must arrive within `seconds` of the first read.

    A client that sends its headers and then trickles (or stops sending) its body would otherwise hold
    a connection and a request task for as long as it likes. Past the limit the answer is 408 with
    `Connection: close`, and uvicorn drops the connection. Once the body is complete, further reads
    (waiting for a disconnect) are not limited.
    """

    def __init__(self, app: ASGIApp, *, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        body_done = False
        started = False

        async def timed_receive() -> Message:
            nonlocal deadline, body_done
            if body_done:
                return await receive()
            if deadline is None:
                deadline = time.monotonic() + self.seconds
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError as exc:
                raise BodyTooSlow(self.seconds) from exc
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def noting_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, noting_send)
        except BodyTooSlow:
            if started:
                raise
            message = f"The request body did not arrive within {self.seconds:g} seconds."
            body = json.dumps({"error": {"code": "request_timeout", "message": message}}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ]
            await send({"type": "http.response.start", "status": 408, "headers": headers})
            await send({"type": "http.response.body", "body": body})
