"""Fixtures every test shares: a migrated database per run, a clean one per test, the app in-process
and under a real server on a loopback port.

`ENTITLE_TEST_DATABASE=postgresql` runs the suite against PostgreSQL (a fresh database named after
this run is created on `ENTITLE_TEST_POSTGRES_URL`, default the local server's `test` database, and
dropped afterwards); anything else runs it against a SQLite file in a temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

import entitle.models  # noqa: F401  (every table on Base.metadata)
from entitle.app import create_app
from entitle.context import AppContext, build_context
from entitle.db.base import Base
from entitle.db.engine import Database
from entitle.db.migrate import run_upgrade
from entitle.services.identity.tokens import SigningKey
from entitle.settings import RunEnvironment, Settings
from entitle.web.server import uvicorn_options

ADMIN_KEY = "test-admin-key-" + "x" * 24
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _uses_postgres() -> bool:
    return os.environ.get("ENTITLE_TEST_DATABASE", "sqlite").lower() in {"postgres", "postgresql", "pg"}


async def _admin_sql(url: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A freshly migrated database for this test run; the migrations under test are the shipped ones."""
    if not _uses_postgres():
        path = tmp_path_factory.mktemp("db") / "entitle-test.db"
        url = f"sqlite+aiosqlite:///{path}"
        run_upgrade(url)
        yield url
        return
    admin_url = os.environ.get("ENTITLE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    name = f"entitle_test_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_admin_sql(admin_url, f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + "/" + name
    try:
        run_upgrade(url)
        yield url
    finally:
        asyncio.run(_admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate()


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": RunEnvironment.TEST,
        "database_url": database_url,
        "public_url": "http://testserver",
        "admin_api_key": ADMIN_KEY,
        # Generous limits: tests of the limits themselves set their own.
        "rate_limit_per_address": "1000/minute",
        "rate_limit_per_ip": "1000/minute",
        "rate_limit_mail_per_address": "1000/minute",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module, or parametrize it per test, to change settings."""
    return {}


@pytest.fixture
def settings(database_url: str, settings_overrides: dict[str, Any]) -> Settings:
    return make_settings(database_url, **settings_overrides)


async def _empty_all_tables(database: Database) -> None:
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    async with database.engine.begin() as connection:
        if database.dialect == "postgresql":
            await connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                await connection.execute(text(f"DELETE FROM {table}"))


@pytest.fixture
async def context(settings: Settings, signing_key: SigningKey) -> AsyncIterator[AppContext]:
    """The long-lived pieces, over a database emptied before the test."""
    context = build_context(settings, signing_key=signing_key)
    await _empty_all_tables(context.database)
    try:
        yield context
    finally:
        await context.aclose()


@pytest.fixture
async def db(context: AppContext) -> AsyncIterator[AsyncSession]:
    """A session for calling services directly; the test commits what it wants kept."""
    async with context.database.sessionmaker() as session:
        yield session


class SettlingTransport(httpx.AsyncBaseTransport):
    """The app in-process; after a provider webhook is answered, waits until its processing (which
    runs off the request, in this process) has finished, as a client that polls until the change shows
    would. Tests of the acknowledgement itself use `acknowledging_client`."""

    def __init__(self, app: Any, context: AppContext) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.context = context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.startswith("/webhooks/") or request.url.path.startswith("/v1/billing/"):
            await self.context.pipeline.wait_idle()
        return response


@pytest.fixture
async def client(context: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process (no lifespan: the `context` fixture owns the shared pieces)."""
    app = create_app(context=context)
    async with httpx.AsyncClient(
        transport=SettlingTransport(app, context), base_url="http://testserver"
    ) as http:
        yield http


@pytest.fixture
async def acknowledging_client(context: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, answering webhooks without waiting for their processing."""
    transport = httpx.ASGITransport(app=create_app(context=context))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


class LiveServer:
    """The real app under uvicorn on a loopback port, in its own thread and event loop."""

    def __init__(self, settings: Settings, signing_key: SigningKey) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.settings = settings.model_copy(update={"public_url": self.url})
        self.signing_key = signing_key
        self.server: uvicorn.Server | None = None
        self.thread = threading.Thread(target=self._run, name="entitle-live-server", daemon=True)

    def _run(self) -> None:
        app = create_app(context=build_context(self.settings, signing_key=self.signing_key))
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", access_log=False, **uvicorn_options(self.settings)
        )
        self.server = uvicorn.Server(config)
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.server is not None and self.server.started:
                return
            time.sleep(0.02)
        raise RuntimeError("the live server did not start")

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@pytest.fixture
async def live_server(
    context: AppContext, settings: Settings, signing_key: SigningKey
) -> AsyncIterator[LiveServer]:
    """A real HTTP server over the same (emptied) database as `context`."""
    server = LiveServer(settings, signing_key)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


def pytest_report_header(config: pytest.Config) -> str:
    return f"entitle database: {'postgresql' if _uses_postgres() else 'sqlite'}"


__all__ = ["ADMIN_KEY", "LiveServer", "make_settings"]
