"""A normal client's latency while hostile clients flood `entitle serve` (issue 17, items 1 and 2).

`entitle serve` runs in a subprocess exactly as deployed (its protocol, limits and timeouts); a normal
client sends `GET /v1/catalog` one request after another, first alone (the baseline), then while
attackers in another process hold the server:

- header flood: 40 connections sending endless headers (64 KiB at a time, reconnecting when refused);
- 413 flood: 300 connections announcing `Content-Length: 100000000` and trickling one byte every 2 s.

Printed: the normal client's p50 and p99 and their ratio to the baseline, the requests that failed
(a 10 s timeout counts as 10 s), and the server's peak RSS. Loopback only; every phase is bounded.

    PYTHONPATH=src python bench/bench_hostile_clients.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.harness import ROOT, entitle_env, free_port, print_table, wait_until_healthy

CLIENT_TIMEOUT = 10.0
HEADER_FLOOD_CONNECTIONS = 40
BODY_FLOOD_CONNECTIONS = 300


@contextmanager
def entitle_serve(workdir: Path) -> Iterator[tuple[str, int]]:
    """`entitle serve` on a free port; yields its URL and process id."""
    port = free_port()
    env = {**os.environ, **entitle_env("sqlite", workdir), "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "entitle", "serve", "--port", str(port), "--no-worker"]
    process = subprocess.Popen(
        command, env=env, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, seconds=60, what="entitle serve")
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# Attackers (run in their own process, so they do not share the normal client's interpreter).


async def _header_attacker(port: int, until: float) -> None:
    chunk = b"a" * 65536
    while time.monotonic() < until:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /v1/catalog HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: ")
            while time.monotonic() < until:
                writer.write(chunk)
                await writer.drain()
        except OSError:
            await asyncio.sleep(0.05)
            continue


async def _body_attacker(port: int, until: float) -> None:
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000000\r\n\r\n{"
            )
            while time.monotonic() < until:
                await writer.drain()
                await asyncio.sleep(2)
                writer.write(b"a")
                if reader.at_eof():
                    break
        except OSError:
            await asyncio.sleep(0.05)
            continue


def _attack(kind: str, port: int, seconds: float) -> None:
    async def main() -> None:
        until = time.monotonic() + seconds
        attacker = _header_attacker if kind == "headers" else _body_attacker
        count = HEADER_FLOOD_CONNECTIONS if kind == "headers" else BODY_FLOOD_CONNECTIONS
        tasks = [asyncio.create_task(attacker(port, until)) for _ in range(count)]
        await asyncio.wait(tasks, timeout=seconds + 5)
        for task in tasks:
            task.cancel()

    asyncio.run(main())


# The normal client.


def normal_client(url: str, seconds: float) -> tuple[list[float], int]:
    """Latencies (ms) of sequential GET /v1/catalog for `seconds`, and how many failed."""
    latencies: list[float] = []
    failures = 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            with httpx.Client(timeout=CLIENT_TIMEOUT) as http:
                ok = http.get(url + "/v1/catalog").status_code == 200
        except httpx.HTTPError:
            ok = False
        latencies.append((time.monotonic() - started) * 1000)
        failures += not ok
    return latencies, failures


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def measure(url: str, pid: int, seconds: float, attack: Callable[[], None] | None) -> dict[str, float]:
    peak = [rss_mb(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak.append(rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    attacker: multiprocessing.Process | None = None
    if attack is not None:
        attacker = multiprocessing.Process(target=attack)
        attacker.start()
        time.sleep(2)  # let the flood take hold before measuring
    latencies, failures = normal_client(url, seconds)
    if attacker is not None:
        attacker.join(timeout=seconds + 15)
        if attacker.is_alive():
            attacker.terminate()
    done.set()
    sampler.join()
    return {
        "requests": len(latencies),
        "failures": failures,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "rss": max(peak),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    seconds = args.seconds
    with tempfile.TemporaryDirectory() as folder, entitle_serve(Path(folder)) as (url, pid):
        port = int(url.rsplit(":", 1)[1])
        phases = {
            "no attack (baseline)": None,
            f"header flood ({HEADER_FLOOD_CONNECTIONS} conns)": lambda: _attack("headers", port, seconds + 2),
            f"413 flood ({BODY_FLOOD_CONNECTIONS} conns)": lambda: _attack("body", port, seconds + 2),
        }
        results = {name: measure(url, pid, seconds, attack) for name, attack in phases.items()}
    base = results["no attack (baseline)"]
    rows = [
        (
            name,
            f"{r['requests']:.0f}",
            f"{r['failures']:.0f}",
            f"{r['p50']:.1f} ms",
            f"{r['p99']:.1f} ms",
            f"{r['p99'] / base['p99']:.2f}",
            f"{r['rss']:.0f} MB",
        )
        for name, r in results.items()
    ]
    print_table(
        f"normal client GET /v1/catalog under attack ({seconds:g} s per phase, `entitle serve`, one process)",
        rows,
        ("phase", "requests", "failed", "p50", "p99", "p99/baseline", "server peak RSS"),
    )


if __name__ == "__main__":
    main()
