"""Change notifiers: tell this process's broadcaster that the log head moved.

A notification is only a wake-up; data is always read from the events table.

- `LocalNotifier` (SQLite): the writer wakes the broadcaster in process; a timed poll
  of log_head covers appends made by other processes on the same file.
- `PostgresNotifier`: one dedicated psycopg connection (autocommit, outside the
  SQLAlchemy pool) LISTENs on a channel (app.store.pg_write.CHANNEL). The writer
  sends pg_notify with the new head right after each commit, on its own connection
  and outside the append transaction (NOTIFY inside it would take a cluster-wide lock
  through the commit), and calls `published(head)`, which wakes this process; the
  listener skips the notifications of its own process's writer. The listener
  reconnects with backoff after the connection is lost and wakes everyone on
  reconnect; a timed poll of log_head on the same connection covers lost
  notifications.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg

from app.domain.errors import StoreUnavailableError
from app.store.database import Database
from app.store.engine import pg_conninfo
from app.store.pg_write import CHANNEL

LISTENER_NAME = "evstore-listener"

Wake = Callable[[int | None], None]  # None: "something may have changed, re-read"

log = logging.getLogger("evstore.notifier")


class LocalNotifier:
    def __init__(self, db: Database, poll_seconds: float) -> None:
        self.db = db
        self.poll_seconds = poll_seconds
        self._wakes: list[Wake] = []
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, wake: Wake) -> None:
        self._wakes.append(wake)

    def published(self, head: int) -> None:
        self._wake(head)

    def _wake(self, head: int | None) -> None:
        for wake in self._wakes:
            wake(head)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._poll(), name="evstore-head-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            with contextlib.suppress(StoreUnavailableError):
                self._wake(await self.db.head())


class PostgresNotifier(LocalNotifier):
    def __init__(
        self,
        db: Database,
        database_url: str,
        poll_seconds: float,
        connect_timeout: float,
        own_pid: Callable[[], int],
    ) -> None:
        super().__init__(db, poll_seconds)
        self.connect_timeout = max(1, round(connect_timeout))
        self.conninfo = pg_conninfo(database_url)
        # The server process of this process's writer connection, whose notifications
        # this process has acted on already.
        self.own_pid = own_pid

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="evstore-listener")

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo,
                    autocommit=True,
                    application_name=LISTENER_NAME,
                    connect_timeout=self.connect_timeout,
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    backoff = 0.1
                    self._wake(None)  # anything may have happened while we were away
                    await self._relay(conn)
            except (psycopg.Error, OSError) as e:
                log.warning("listener connection lost (%s); reconnecting in %.1fs", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _relay(self, conn: psycopg.AsyncConnection[tuple[int]]) -> None:
        while True:
            async for note in conn.notifies(timeout=self.poll_seconds):
                if note.pid == self.own_pid():
                    continue  # this process's own head: its writer woke it already
                self._wake(int(note.payload) if note.payload.isdigit() else None)
            cursor = await conn.execute("SELECT position FROM log_head")
            row = await cursor.fetchone()
            if row is not None:
                self._wake(int(row[0]))
