"""Shared benchmark machinery: servers in subprocesses, a keep-alive HTTP load generator, a table.

Benchmarks print ratios against a baseline measured in the same run, because machines here are noisy:
an absolute number from one run says little, a ratio between two things measured side by side says more.
The server runs in its own process (uvicorn, one worker) so the load generator in this process does
not compete with it for the interpreter.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


POSTGRES_URL = os.environ.get("ENTITLE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def entitle_env(database: str, workdir: Path, *, name: str = "entitle_bench", **extra: str) -> dict[str, str]:
    """Settings for an entitle server under benchmark: a SQLite file in `workdir` or PostgreSQL
    database `name`, a signing key in `workdir`, and rate limits out of the way."""
    url = (
        f"sqlite:///{workdir / 'bench.db'}"
        if database == "sqlite"
        else POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    )
    return {
        "ENTITLE_DATABASE_URL": url,
        "ENTITLE_ENVIRONMENT": "development",
        "ENTITLE_JWT_PRIVATE_KEY_PATH": str(workdir / "key.pem"),
        "ENTITLE_RATE_LIMIT_PER_ADDRESS": "1000000/minute",
        "ENTITLE_RATE_LIMIT_PER_IP": "1000000/minute",
        **extra,
    }


async def admin_sql(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def prepare_database(database: str, env: dict[str, str]) -> None:
    """A fresh, migrated database for `env` (PostgreSQL: dropped and created again)."""
    from entitle.db.migrate import run_upgrade

    if database == "postgresql":
        name = env["ENTITLE_DATABASE_URL"].rsplit("/", 1)[1]
        await admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin_sql(f'CREATE DATABASE "{name}"')
    await asyncio.to_thread(run_upgrade, env["ENTITLE_DATABASE_URL"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def uvicorn_server(app: str, *, env: dict[str, str] | None = None, factory: bool = False) -> Iterator[str]:
    """Run `module:attr` under uvicorn in a subprocess; yields its base URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    if factory:
        command.append("--factory")
    process = subprocess.Popen(command, env={**os.environ, **(env or {})}, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, seconds=30, what=app)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], *, seconds: float, what: str) -> None:
    """Until `url`/healthz answers; raises when the process ends or `seconds` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(url + "/healthz", timeout=1)
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.1)


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


RequestFactory = Callable[[int], bytes]


def http_request(
    method: str, path: str, host: str, *, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def run_load(
    url: str,
    make_request: RequestFactory,
    *,
    concurrency: int,
    seconds: float,
    ok: Callable[[int], bool] = lambda s: s < 400,
) -> LoadResult:
    """Closed-loop load: each keep-alive connection sends its next request when the last one answered."""
    host, port = url.removeprefix("http://").split(":")
    deadline = time.perf_counter() + seconds
    latencies: list[float] = []
    errors = 0
    counter = 0

    async def connection() -> None:
        nonlocal errors, counter
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < deadline:
                counter += 1
                started = time.perf_counter()
                writer.write(make_request(counter))
                status = await _read_response(reader)
                latencies.append((time.perf_counter() - started) * 1000)
                if not ok(status):
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return LoadResult(len(latencies), errors, time.perf_counter() - started, latencies)


async def send_all(url: str, requests: list[bytes], *, concurrency: int) -> LoadResult:
    """Send each request once, in order, over `concurrency` keep-alive connections (a burst of deliveries)."""
    host, port = url.removeprefix("http://").split(":")
    pending = iter(requests)
    latencies: list[float] = []
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for request in pending:
                started = time.perf_counter()
                writer.write(request)
                if await _read_response(reader) >= 300:
                    errors += 1
                latencies.append((time.perf_counter() - started) * 1000)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return LoadResult(len(latencies), errors, time.perf_counter() - started, latencies)


async def run_open_loop(
    url: str, requests: list[bytes], *, rate: float, seconds: float, concurrency: int
) -> LoadResult:
    """Requests at evenly spaced moments over a pool of keep-alive connections.

    Latency counts from the moment a request was due, not from when a connection was free to send it,
    so queueing inside the server or in front of it is counted (no coordinated omission).
    """
    host, port = url.removeprefix("http://").split(":")
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(concurrency):
        idle.put_nowait(await asyncio.open_connection(host, int(port)))
    latencies: list[float] = []
    errors = 0

    async def one(index: int, due: float) -> None:
        nonlocal errors
        reader, writer = await idle.get()
        writer.write(requests[index % len(requests)])
        if await _read_response(reader) >= 400:
            errors += 1
        latencies.append((time.perf_counter() - due) * 1000)
        idle.put_nowait((reader, writer))

    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    index = 0
    while (due := started + index / rate) < started + seconds:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(index, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        index += 1
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    while not idle.empty():
        idle.get_nowait()[1].close()
    return LoadResult(len(latencies), errors, elapsed, latencies)


def print_table(title: str, rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=False)))
