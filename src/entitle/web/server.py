"""How uvicorn runs entitle: timeouts for slow and silent clients (slowloris).

uvicorn closes an idle kept-alive connection (`timeout_keep_alive`) but has no limit on how long a
client may take to send its request headers: a connection that sends nothing, or half a header and
then nothing, is held forever, and enough of them exhaust the server. The protocol below closes a
connection whose headers are not complete `header_timeout` seconds after the connection opened or the
request began. The body has its own limit (`web.limits.BodyReadTimeout`, ASGI middleware, because the
body is read by the app). Behind a proxy that buffers requests (nginx does by default) the proxy is the
one that meets slow clients; these limits then only guard the proxy-to-entitle hop.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from entitle.settings import Settings


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing connections whose headers take longer than `header_timeout`."""

    _header_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def guarded_protocol(header_timeout: float) -> type[asyncio.Protocol]:
    """What uvicorn builds each connection's protocol with: `HeaderTimeoutProtocol` with this timeout.

    A partial of a module-level class, not a class made here, so it pickles: `serve --workers N` hands
    uvicorn's options to processes it spawns."""
    protocol = functools.partial(HeaderTimeoutProtocol, header_timeout=header_timeout)
    return cast(type[asyncio.Protocol], protocol)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The options `entitle serve` gives uvicorn (tests start real servers with the same)."""
    return {
        "http": guarded_protocol(settings.http_header_timeout_seconds),
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        # Past this, a request's headers are refused (h11 only; httptools has its own fixed limits).
        "h11_max_incomplete_event_size": 16 * 1024,
    }
