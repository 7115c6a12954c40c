"""The composition root of the store: `open_store(settings)` builds every part with
its collaborators passed in, starts what runs in the background, and stops and
disposes of it all on the way out. The app's lifespan, the test fixtures and the
benchmarks open the store this way and no other."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from app.settings import Settings
from app.store.database import Database
from app.store.engine import (
    async_url,
    create_engine,
    operation_deadline,
    pg_connect_args,
    pg_conninfo,
)
from app.store.event_store import EventStore
from app.store.notifier import LocalNotifier, PostgresNotifier
from app.store.pg_write import PgWriteConnection
from app.store.snapshots import SnapshotStore
from app.store.sqlite_write import SqliteWriteConnection
from app.store.subscriptions import SubscriptionStore
from app.store.writer import WriteConnection, Writer


@dataclass(frozen=True)
class Store:
    """The parts of an open store."""

    db: Database
    notifier: LocalNotifier
    writer: Writer
    events: EventStore
    snapshots: SnapshotStore
    subscriptions: SubscriptionStore


@contextlib.asynccontextmanager
async def open_store(
    settings: Settings, on_batch: Callable[[int], None] | None = None
) -> AsyncIterator[Store]:
    """The store on `settings.database_url` (schema already migrated), running until
    the block ends. `on_batch` is told the size of each group-commit batch."""
    deadline = operation_deadline(settings)
    db = Database(create_engine(settings), deadline=deadline)
    notifier: LocalNotifier
    connection: WriteConnection
    if db.dialect == "postgresql":
        pg = connection = PgWriteConnection(
            pg_conninfo(settings.database_url), pg_connect_args(settings), deadline
        )
        notifier = PostgresNotifier(
            db,
            settings.database_url,
            settings.live_poll_seconds,
            settings.connect_timeout_seconds,
            own_pid=lambda: pg.backend_pid,
        )
    else:
        connection = SqliteWriteConnection(
            async_url(settings.database_url), settings.statement_timeout_seconds
        )
        notifier = LocalNotifier(db, settings.live_poll_seconds)
    writer = Writer(
        connection,
        on_commit=notifier.published,
        on_batch=on_batch,
        max_batch_bytes=settings.max_batch_bytes,
    )
    store = Store(
        db=db,
        notifier=notifier,
        writer=writer,
        events=EventStore(db, writer, settings.max_page_bytes),
        snapshots=SnapshotStore(db),
        subscriptions=SubscriptionStore(db),
    )
    try:
        await notifier.start()
        await writer.start()
        yield store
    finally:
        await writer.stop()
        await notifier.stop()
        await db.dispose()
