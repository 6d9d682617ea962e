"""Real `entitle` processes for tests: servers and workers as a deployment runs them, killable."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

from entitle.services.identity.tokens import SigningKey
from tests.conftest import ADMIN_KEY

# Tests that need Redis use this database of the local server (or ENTITLE_TEST_REDIS_URL).
REDIS_URL = os.environ.get("ENTITLE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(database_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of an entitle process: the test database, a shared signing key, the server key."""
    key_path = workdir / "access-token-key.pem"
    SigningKey.load_or_create(key_path, create=True)  # shared, so every process accepts every token
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENTITLE_")}
    env.update(
        {
            "ENTITLE_ENVIRONMENT": "test",
            "ENTITLE_DATABASE_URL": database_url,
            "ENTITLE_JWT_PRIVATE_KEY_PATH": str(key_path),
            "ENTITLE_ADMIN_API_KEY": ADMIN_KEY,
            "ENTITLE_RATE_LIMIT_PER_ADDRESS": "1000/minute",
            "ENTITLE_RATE_LIMIT_PER_IP": "1000/minute",
            **extra,
        }
    )
    return env


async def next_stream_event(lines: AsyncIterator[str]) -> dict[str, Any]:
    """The next `data:` of a server-sent event stream, parsed."""
    data: dict[str, Any] = {}
    async for line in lines:
        if line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
        elif line == "" and data:
            return data
    raise AssertionError("the stream ended")


class EntitleProcess:
    """`entitle serve` or `entitle worker` in a subprocess; `kill()` is kill -9."""

    def __init__(self, command: list[str], env: dict[str, str], workdir: Path, *, port: int | None = None):
        self.command = command
        self.env = env
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}" if port else ""
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{command[0]}-{port or 'worker'}-{time.monotonic_ns()}.log"

    @classmethod
    def server(cls, env: dict[str, str], workdir: Path, *options: str) -> EntitleProcess:
        port = free_port()
        return cls(["serve", "--port", str(port), *options], env, workdir, port=port)

    @classmethod
    def worker(cls, env: dict[str, str], workdir: Path, *options: str) -> EntitleProcess:
        return cls(["worker", *options], env, workdir)

    def start(self, *, timeout: float = 30) -> EntitleProcess:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "entitle", *self.command],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if self.port is None:
            return self
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"entitle {' '.join(self.command)} did not start:\n{self.output()}")
            time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def children(self) -> list[int]:
        """The server processes `serve --workers N` spawned and that are alive (Linux: read from /proc)."""
        assert self.process is not None
        pid = self.process.pid
        found = []
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            try:
                status = Path(f"/proc/{child}/status").read_text()
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:  # gone meanwhile
                continue
            if b"spawn_main" in command and "State:\tZ" not in status:
                found.append(int(child))
        return found

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """kill -9: no shutdown, no cleanup, as a crashed machine or an OOM kill would."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> EntitleProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextlib.contextmanager
def embedded_serve(folder: Path, **env: str) -> Iterator[int]:
    """`entitle serve --no-worker` on its embedded SQLite default in `folder`, as a new user starts it,
    with only `env` set among the ENTITLE_ settings; yields its port once it answers /healthz."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ENTITLE_")} | env
    process = subprocess.Popen(
        [sys.executable, "-m", "entitle", "serve", "--port", str(port), "--no-worker"],
        cwd=folder,
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    raise RuntimeError(f"entitle serve did not start:\n{output}") from None
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stdout:
            process.stdout.close()
