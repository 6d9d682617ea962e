"""Changes told to whoever listens, in this process and in every other: answers and the inbox.

Three kinds of news travel here. An account's answer changed (a stream holding that account re-reads and
pushes it), a provider event was stored for any process to work on (a worker wakes up at once
instead of at its next poll), and settings were saved from /admin/setup (every process re-reads them and
rebuilds its providers, services.setup.runtime_settings). The decision this module owns is the
transport, chosen once per process:

- PostgreSQL without Redis: `NOTIFY` inside the writer's transaction, so listeners hear of a change only
  once it is committed, and never of a rolled-back one; every process keeps one `LISTEN` connection.
- Redis (`ENTITLE_REDIS_URL`): `PUBLISH` right after the commit, one subscriber connection per process.
  Inbox wake-ups and settings changes still use `NOTIFY` on PostgreSQL (every process shares that
  database anyway).
- SQLite: in this process only (SQLite is served by one process).

A lost connection is re-established with backoff; on reconnecting every local listener is woken, since
something may have changed while nobody listened. Listeners re-read the truth from the database when
woken, so a spurious wake-up costs one read and a missed one is caught by the next (streams also
re-check on every heartbeat).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from entitle.db.engine import Database
from entitle.errors import RateLimited

log = logging.getLogger(__name__)

ANSWERS_CHANNEL = "entitle_answers"
INBOX_CHANNEL = "entitle_inbox"
SETTINGS_CHANNEL = "entitle_settings"
_REDIS_CHANNEL = "entitle:answers"
_BUS_KEY = "entitle.change_bus"
_CHANGED_KEY = "entitle.changed_accounts"
_INBOX_KEY = "entitle.inbox_stored"
_SETTINGS_KEY = "entitle.settings_changed"
_NOTIFY = text("SELECT pg_notify(:channel, :payload)")
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0)


class AnswerListeners:
    """The streams of this process, by account; each listener is an event set when its account changed."""

    def __init__(self, *, per_account: int) -> None:
        self.per_account = per_account
        self._by_account: dict[uuid.UUID, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def listen(self, account_id: uuid.UUID) -> Any:
        listeners = self._by_account.setdefault(account_id, set())
        if len(listeners) >= self.per_account:
            raise RateLimited(
                f"This account already has {self.per_account} open streams; close one first.",
                retry_after=5,
                code="too_many_streams",
            )
        woken = asyncio.Event()
        listeners.add(woken)
        try:
            yield woken
        finally:
            listeners.discard(woken)
            if not listeners:
                self._by_account.pop(account_id, None)

    def wake(self, account_id: uuid.UUID) -> None:
        for woken in self._by_account.get(account_id, ()):
            woken.set()

    def wake_all(self) -> None:
        for listeners in self._by_account.values():
            for woken in listeners:
                woken.set()

    @property
    def count(self) -> int:
        return sum(len(listeners) for listeners in self._by_account.values())


class ChangeBus:
    def __init__(self, database: Database, *, redis_url: str | None, streams_per_account: int) -> None:
        self.database = database
        self.redis_url = redis_url
        self.listeners = AnswerListeners(per_account=streams_per_account)
        # Set when a provider event may be waiting; the pipeline's consumer waits on it.
        self.inbox_woken = asyncio.Event()
        # Called (in the event loop) when saved settings may have changed, here or in another process.
        self.on_settings_changed: Callable[[], None] | None = None
        self._uses_notify = database.dialect == "postgresql"
        self._answers_by_notify = self._uses_notify and redis_url is None
        self._task: asyncio.Task[None] | None = None
        self._redis: Any = None
        self._publishing: set[asyncio.Task[Any]] = set()
        self._closed = False
        database.set_session_info(_BUS_KEY, self)

    # -- writers -----------------------------------------------------------------------------------
    async def account_changed(self, db: AsyncSession, account_id: uuid.UUID) -> None:
        """Wake every listener of `account_id` (its answer or its sessions changed), once the transaction
        of `db` commits."""
        if self._answers_by_notify:
            await db.execute(_NOTIFY, {"channel": ANSWERS_CHANNEL, "payload": str(account_id)})
            return
        db.info.setdefault(_CHANGED_KEY, set()).add(account_id)

    async def inbox_stored(self, db: AsyncSession) -> None:
        """Wake the consumers of every process once the transaction of `db` (which stored events) commits."""
        if self._uses_notify:
            await db.execute(_NOTIFY, {"channel": INBOX_CHANNEL, "payload": ""})
        else:
            db.info[_INBOX_KEY] = True

    async def settings_changed(self, db: AsyncSession) -> None:
        """Tell every process, once the transaction of `db` (which saved settings) commits."""
        if self._uses_notify:
            await db.execute(_NOTIFY, {"channel": SETTINGS_CHANNEL, "payload": ""})
        # This process hears it at once, without waiting for its own NOTIFY to come back.
        db.info[_SETTINGS_KEY] = True

    def _settings_woken(self) -> None:
        if self.on_settings_changed is not None:
            self.on_settings_changed()

    @property
    def answers_by_notify(self) -> bool:
        """True when a writer tells of a change inside its transaction (`NOTIFY`, see the module)."""
        return self._answers_by_notify

    def answers_committed(self, changed: set[uuid.UUID]) -> None:
        """Wake the listeners of accounts a transaction outside any session changed, once it committed
        (the spend's raw-driver path; with `answers_by_notify` it sent its `NOTIFY` itself)."""
        if changed and not self._answers_by_notify:
            self._tell(changed)

    def _after_commit(self, session: Session) -> None:
        changed: set[uuid.UUID] | None = session.info.pop(_CHANGED_KEY, None)
        if session.info.pop(_INBOX_KEY, False):
            self.inbox_woken.set()
        if session.info.pop(_SETTINGS_KEY, False):
            self._settings_woken()
        if not changed:
            return
        self._tell(changed)

    def _tell(self, changed: set[uuid.UUID]) -> None:
        if self.redis_url is None:
            for account_id in changed:
                self.listeners.wake(account_id)
            return
        task = asyncio.get_running_loop().create_task(self._publish(changed))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, changed: set[uuid.UUID]) -> None:
        try:
            redis = await self._redis_client()
            for account_id in changed:
                await redis.publish(_REDIS_CHANNEL, str(account_id))
        except Exception as exc:  # the streams' heartbeat re-check catches what a lost publish missed
            log.warning("could not publish an answer change to Redis: %s", exc.__class__.__name__)
            for account_id in changed:
                self.listeners.wake(account_id)

    # -- listeners ---------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def listen(self, account_id: uuid.UUID) -> AsyncIterator[asyncio.Event]:
        """An event set whenever the account's answer may have changed, in any process."""
        with self.listeners.listen(account_id) as woken:
            self.start()
            yield woken

    def start(self) -> None:
        """Start listening to other processes (idempotent; nothing to do on SQLite without Redis)."""
        if self._task is not None or self._closed:
            return
        if self._uses_notify or self.redis_url is not None:
            self._task = asyncio.get_running_loop().create_task(self._listen_forever())

    async def _listen_forever(self) -> None:
        failures = 0
        while not self._closed:
            connected = False
            try:
                connected = await self._listen_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("change listener lost its connection: %s", exc.__class__.__name__)
            failures = 0 if connected else failures + 1
            await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])

    async def _listen_once(self) -> bool:
        """Hold the listening connections until one fails; True once they had been established."""
        lost = asyncio.Event()
        postgres = None
        try:
            if self._uses_notify:
                import asyncpg  # type: ignore[import-untyped]

                postgres = await asyncpg.connect(_asyncpg_dsn(self.database.url))
                postgres.add_termination_listener(lambda _connection: lost.set())
                await postgres.add_listener(INBOX_CHANNEL, lambda *_args: self.inbox_woken.set())
                await postgres.add_listener(SETTINGS_CHANNEL, lambda *_args: self._settings_woken())
                if self._answers_by_notify:
                    await postgres.add_listener(ANSWERS_CHANNEL, self._on_notify)
            # Anything that changed while nobody listened is picked up by re-reading now.
            self.listeners.wake_all()
            self.inbox_woken.set()
            self._settings_woken()
            if self.redis_url is not None:
                await self._follow_redis(lost)
            else:
                await lost.wait()
            return True
        finally:
            if postgres is not None:
                with contextlib.suppress(Exception):
                    await postgres.close(timeout=2)

    async def _follow_redis(self, lost: asyncio.Event) -> None:
        redis = await self._redis_client()
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(_REDIS_CHANNEL)
            while not lost.is_set():
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    self._wake_from(message.get("data"))
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self._wake_from(payload)

    def _wake_from(self, payload: Any) -> None:
        if isinstance(payload, bytes):
            payload = payload.decode(errors="replace")
        try:
            self.listeners.wake(uuid.UUID(str(payload)))
        except ValueError:
            return

    async def _redis_client(self) -> Any:
        assert self.redis_url is not None
        if self._redis is None:
            import redis.asyncio as redis_asyncio

            self._redis = redis_asyncio.from_url(self.redis_url, socket_connect_timeout=2)
        return self._redis

    async def aclose(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for task in list(self._publishing):
            with contextlib.suppress(Exception):
                await task
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()


def change_bus(db: AsyncSession) -> ChangeBus | None:
    """The bus the session's database was built with (None for sessions made outside an app)."""
    bus = db.info.get(_BUS_KEY)
    return bus if isinstance(bus, ChangeBus) else None


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@event.listens_for(Session, "after_commit")
def _tell_after_commit(session: Session) -> None:
    bus = session.info.get(_BUS_KEY)
    if isinstance(bus, ChangeBus):
        bus._after_commit(session)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_CHANGED_KEY, None)
    session.info.pop(_INBOX_KEY, None)
    session.info.pop(_SETTINGS_KEY, None)
