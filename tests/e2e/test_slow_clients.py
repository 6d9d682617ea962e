"""`entitle serve` against slow and silent clients (slowloris), and the URLs it prints and answers with.

A real server in a subprocess, as deployed, with short limits: a stalled connection must be closed
within the configured time while other clients keep being served.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.processes import embedded_serve

LIMIT = 1.0
# Generous slack over the limit: the machine is shared and slow at times.
CLOSED_WITHIN = LIMIT + 4.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    with embedded_serve(
        tmp_path_factory.mktemp("serve"),
        ENTITLE_HTTP_HEADER_TIMEOUT_SECONDS=str(LIMIT),
        ENTITLE_HTTP_BODY_TIMEOUT_SECONDS=str(LIMIT),
        ENTITLE_HTTP_KEEP_ALIVE_SECONDS=str(LIMIT),
    ) as port:
        yield port, f"http://127.0.0.1:{port}"


def closed_after(sock: socket.socket) -> tuple[float, bytes]:
    """Seconds until the server closed the connection, and what it sent before closing."""
    started = time.monotonic()
    sock.settimeout(CLOSED_WITHIN + 5)
    received = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return time.monotonic() - started, received
        received += chunk


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


@pytest.mark.parametrize(
    "sent",
    [
        b"",  # silence
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",  # partial headers
    ],
    ids=["silence", "partial-headers"],
)
def test_a_connection_that_never_finishes_its_headers_is_closed(server: tuple[int, str], sent: bytes) -> None:
    port, url = server
    with connect(port) as stalled:
        stalled.sendall(sent)
        # Meanwhile other clients are served at once.
        assert httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        waited, answer = closed_after(stalled)
    assert waited < CLOSED_WITHIN
    assert answer == b""


def test_a_body_that_stops_arriving_is_a_408_and_closed(server: tuple[int, str]) -> None:
    port, url = server
    with connect(port) as stalled:
        stalled.sendall(
            b"POST /v1/auth/register HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\n\r\n" + b'{"email": "slow'
        )
        assert httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        waited, answer = closed_after(stalled)
    assert waited < CLOSED_WITHIN
    assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer


def test_an_idle_kept_alive_connection_is_closed(server: tuple[int, str]) -> None:
    port, _ = server
    with connect(port) as idle:
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        waited, answer = closed_after(idle)
    assert answer.startswith(b"HTTP/1.1 200")
    assert waited < CLOSED_WITHIN


def test_urls_follow_the_port_served_on(server: tuple[int, str]) -> None:
    """`entitle serve --port N` (and so `scripts/run --port N`) without ENTITLE_PUBLIC_URL answers with N."""
    _, url = server
    response = httpx.get(f"{url}/v1/billing/stripe/portal", timeout=5)
    assert response.status_code == 303
    assert response.headers["location"] == f"{url}/account"
