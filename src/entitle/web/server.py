"""How uvicorn runs entitle: limits on what a client may send before the app sees a request.

uvicorn's httptools protocol (llhttp underneath) sets no limit on the size of a request's line or
headers and none on how long a client may take to send them: a 64 MB header is read into memory and
answered, and a connection that sends half a header and then nothing is held forever. The protocol
below enforces, where the bytes are read and before they are parsed:

- the request line and headers together: at most `MAX_HEADER_BYTES` (else 431), the URL at most
  `MAX_URL_BYTES` (else 414), at most `MAX_HEADER_COUNT` header fields (else 431);
- the time to send them: `header_timeout` seconds from the connection's opening or the request's first
  byte, then the connection is closed;
- after an answer given before the request's body has all arrived (a 413, a 401 on an upload), the
  connection is closed: the rest of the body is junk, and a client trickling it would otherwise keep
  the connection (and a file descriptor) forever, since the keep-alive timer restarts at every byte.
  It is a lingering close, as nginx and Apache do: the answer is sent, the write side shut, and what the
  client still sends is read and dropped for at most `LINGER_SECONDS` before the close. Closing at once
  with the client's bytes unread makes the kernel reset the connection, and a client still uploading
  (an HTTP client sends the whole body before it reads) then loses the 413 it was answered.

A protocol layer rather than ASGI middleware, because middleware runs only once the headers are
complete, after they have been read into memory. The body has its own time limit
(`web.limits.BodyReadTimeout`, middleware, because the body is read by the app). Behind a proxy that
buffers requests (nginx does by default) the proxy meets slow and oversized clients first; these
limits then guard the proxy-to-entitle hop.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any, cast

from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from entitle.settings import Settings

# Request line and headers of one request, in bytes (nginx's default allows 4 x 8 KiB).
MAX_HEADER_BYTES = 32 * 1024
MAX_URL_BYTES = 8 * 1024
MAX_HEADER_COUNT = 100
# After a refusal the connection stays open this long before it is closed (reading nothing after a
# header refusal, reading and dropping after an answer to an unread body): closing at once, with the
# client's bytes unread, resets the connection and may drop the answer on its way out.
LINGER_SECONDS = 2.0


class RequestRefused(Exception):  # noqa: N818  (named for what happened)
    """Raised from a parser callback to stop parsing; `GuardedProtocol` answers with `status`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _headers_too_large() -> RequestRefused:
    return RequestRefused(
        431,
        "request_headers_too_large",
        f"The request headers are larger than {MAX_HEADER_BYTES} bytes or {MAX_HEADER_COUNT} fields.",
    )


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on header size, count and time (see the module)."""

    _header_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        # Between a request's end (or the connection's start) and its headers' end.
        self._reading_headers = True
        self._header_bytes = 0
        self._header_count = 0
        self._refusal: RequestRefused | None = None
        self._refused = False
        # Set when the app answers before the body has all arrived; then closing means lingering.
        self.linger_on_close = False
        self._lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._refused or self._lingering:
            return  # what was read before reading paused, or the unread body's rest while lingering
        while data:
            if not self._reading_headers:
                super().data_received(data)
                return
            # Only as many bytes as the headers may still take are parsed: past that, had the headers
            # not ended, the client is refused without the parser ever holding more. (Bytes after a
            # request's end in the same read are parsed at once: a read is at most 256 KiB.)
            room = MAX_HEADER_BYTES - self._header_bytes
            piece, data = data[:room], data[room:]
            self._header_bytes += len(piece)
            if piece:
                super().data_received(piece)
            if self._refused or self.transport.is_closing():
                return
            if self._reading_headers and data:
                self._refuse(_headers_too_large())
                return

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL_BYTES:
            raise self._stop(
                RequestRefused(414, "uri_too_long", f"The URL is longer than {MAX_URL_BYTES} bytes.")
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADER_COUNT:
            raise self._stop(_headers_too_large())
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._reading_headers = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_headers = True
        self._header_bytes = 0

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers 400 to any parser error, a callback's exception included: ours say otherwise.
        refusal, self._refusal = self._refusal, None
        if refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse(refusal)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # The cycle closes the connection through its transport once a `connection: close` answer is
        # sent: through this one, that close lingers when the body was not read.
        cycle.transport = cast(asyncio.Transport, _LingeringClose(self.transport, self))
        super()._start_asgi_task(cycle, functools.partial(_closing_if_body_unread, app, cycle, self))

    def close_or_linger(self) -> None:
        if not self.linger_on_close:
            self.transport.close()
            return
        if self._lingering or self.transport.is_closing():
            return
        self._lingering = True
        self._disarm()
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer, then FIN: the client reads it once done sending
        self.transport.resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _stop(self, refusal: RequestRefused) -> RequestRefused:
        self._refusal = refusal
        return refusal

    def _refuse(self, refusal: RequestRefused) -> None:
        """Answer `refusal` in the error shape, stop reading, and close a little later."""
        self._disarm()
        self._refused = True
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier request on this connection is still being answered: no room for another answer.
            self.transport.close()
            return
        body = json.dumps({"error": {"code": refusal.code, "message": refusal.message}}).encode()
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[refusal.status],
                    b"content-type: application/json\r\n",
                    b"content-length: %d\r\n" % len(body),
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        # Not read, so the client's sends fill the socket buffers and stop: no memory, no CPU spent.
        self.transport.pause_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _arm(self) -> None:
        if self._header_timer is None and not self._refused:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class _LingeringClose:
    """A connection's transport as one response cycle sees it: `close()` asks the protocol, which
    lingers when the request's body was left unread; everything else is the transport's own."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def close(self) -> None:
        self._protocol.close_or_linger()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


async def _closing_if_body_unread(
    app: ASGI3Application,
    cycle: RequestResponseCycle,
    protocol: GuardedProtocol,
    scope: Scope,
    receive: ASGIReceiveCallable,
    send: ASGISendCallable,
) -> None:
    """Run `app`; an answer that starts before the request's body has all arrived closes the connection.

    uvicorn would keep it open and drop the rest of the body as it comes, for as long as it comes."""

    async def send_closing(message: ASGISendEvent) -> None:
        if message["type"] == "http.response.start" and cycle.more_body:
            cycle.keep_alive = False  # uvicorn then says `connection: close` and closes after the answer
            protocol.linger_on_close = True
        await send(message)

    await app(scope, receive, send_closing)


def guarded_protocol(header_timeout: float) -> type[asyncio.Protocol]:
    """What uvicorn builds each connection's protocol with: `GuardedProtocol` with this timeout.

    A partial of a module-level class, not a class made here, so it pickles: `serve --workers N` hands
    uvicorn's options to processes it spawns."""
    protocol = functools.partial(GuardedProtocol, header_timeout=header_timeout)
    return cast(type[asyncio.Protocol], protocol)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The options `entitle serve` gives uvicorn (tests start real servers with the same)."""
    return {
        "http": guarded_protocol(settings.http_header_timeout_seconds),
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 (or FORWARDED_ALLOW_IPS): the app believes
        # only ENTITLE_TRUSTED_PROXIES (`create_app`), under any server.
        "proxy_headers": False,
    }
