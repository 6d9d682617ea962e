"""`entitle serve` against oversized headers and bodies it will not read (issue 17, items 1 and 2).

A real server in a subprocess, as deployed. The header timeout is long here, so a test that passes
does so because of the size limits, not because the connection timed out.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.processes import embedded_serve

# Every wait is bounded by this; none is asserted on.
PATIENCE = 15.0


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with embedded_serve(
        tmp_path_factory.mktemp("serve"),
        ENTITLE_HTTP_HEADER_TIMEOUT_SECONDS="120",
        ENTITLE_HTTP_KEEP_ALIVE_SECONDS="120",
    ) as served:
        yield served


def send_then_read_until_closed(port: int, sent: bytes) -> bytes:
    """Send `sent` (as much as the server takes), then everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        try:
            sock.sendall(sent)
        except OSError:
            pass  # the server refused before reading it all
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


def test_a_huge_header_is_refused_with_431_and_the_connection_closed(port: int) -> None:
    request = b"GET /v1/catalog HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 64 * 1024 + b"\r\n\r\n"

    answer = send_then_read_until_closed(port, request)

    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"request_headers_too_large" in answer and b"connection: close" in answer.lower()
    assert httpx.get(f"http://127.0.0.1:{port}/v1/catalog", timeout=5).status_code == 200


def test_headers_that_never_end_are_refused_before_they_end(port: int) -> None:
    # 4 MB of one header's value, never finished: refused once past the limit, not held in memory.
    request = b"GET /v1/catalog HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 4 * 1024 * 1024

    answer = send_then_read_until_closed(port, request)

    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_too_many_header_fields_are_refused(port: int) -> None:
    fields = b"".join(b"X-F%d: 1\r\n" % n for n in range(500))
    request = b"GET /v1/catalog HTTP/1.1\r\nHost: 127.0.0.1\r\n" + fields + b"\r\n"

    answer = send_then_read_until_closed(port, request)

    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_a_huge_url_is_refused_with_414(port: int) -> None:
    request = b"GET /v1/catalog?q=" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    answer = send_then_read_until_closed(port, request)

    assert answer.startswith(b"HTTP/1.1 414"), answer[:200]
    assert b"uri_too_long" in answer


def test_ordinary_headers_and_urls_are_served(port: int) -> None:
    headers = {f"X-F{n}": "b" * 100 for n in range(50)}
    response = httpx.get(f"http://127.0.0.1:{port}/v1/catalog?q={'a' * 4000}", headers=headers, timeout=5)
    assert response.status_code == 200


def test_after_a_413_the_connection_is_closed_while_the_body_trickles(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        sock.sendall(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n{"
        )
        answer = b""
        while b"payload_too_large" not in answer:
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 413") and b"connection: close" in answer.lower()
        # Keep trickling the body, as the attacker did: the server must hang up. It has said so (end of
        # its stream) at once, reads and drops a little longer, then closes: a byte sent after that is
        # refused by the kernel (reset), which is what shows the connection is really gone.
        closed = False
        sock.settimeout(0.5)
        for _ in range(int(PATIENCE / 0.5)):
            try:
                sock.sendall(b"a")
                sock.recv(4096)
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                closed = True
                break
            time.sleep(0.5)
        assert closed, "the connection stayed open after the 413"


def test_a_client_uploading_a_body_over_the_limit_reads_the_413(port: int) -> None:
    """An HTTP client sends the whole body before it reads: the 413 must still reach it, not a reset."""
    body = b"a" * (8 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        sock.sendall(
            b"POST /v1/auth/register HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        sock.sendall(body)
        answer = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"payload_too_large" in answer


def test_an_error_answered_before_the_body_arrived_closes_the_connection(port: int) -> None:
    """Not only the 413: any answer given with the body still unread (here a 404)."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        sock.sendall(b"POST /v1/nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n{")
        answer = b""
        while True:
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 404") and b"connection: close" in answer.lower()
