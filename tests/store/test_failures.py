"""Driver failures and their translation (app/store/failures.py), on each backend: each
failure is caused for real and must come out of `Database.connect` as its domain
error; a statement that is simply wrong stays a bug (untranslated, a 500)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import exc

from app.domain.errors import StoreUnavailableError
from app.domain.types import ANY_VERSION
from app.settings import Settings
from app.store.bootstrap import Store
from app.store.database import Database
from app.store.engine import create_engine
from app.store.failures import EventIdTakenError, VersionTakenError
from app.store.tables import events
from tests.support.factories import new_event
from tests.support.tcp_proxy import free_port

NOW = datetime.now(UTC)


def row(position: int, event_id: str, version: int) -> dict[str, object]:
    return {
        "position": position,
        "event_id": event_id,
        "stream_id": "Order-1",
        "category": "Order",
        "version": version,
        "type": "Placed",
        "data": "{}",
        "metadata": "{}",
        "recorded_at": NOW,
    }


@pytest.fixture
async def stored(opened: Store) -> AsyncIterator[tuple[Database, str]]:
    """The database with one event (Order-1 at version 1); its id."""
    result = await opened.events.append("Order-1", [new_event()], ANY_VERSION)
    yield opened.db, result.events[0].id


async def insert(db: Database, values: dict[str, object]) -> None:
    async with db.connect(write=True) as conn, conn.begin():
        await conn.execute(sa.insert(events).values(**values))


async def test_a_stored_event_id_is_event_id_taken(stored: tuple[Database, str]) -> None:
    db, event_id = stored
    with pytest.raises(EventIdTakenError) as caught:
        await insert(db, row(2, event_id, 2))
    assert isinstance(caught.value.__cause__, exc.IntegrityError)


async def test_a_taken_version_is_version_taken(stored: tuple[Database, str]) -> None:
    db, _ = stored
    other = new_event().id
    with pytest.raises(VersionTakenError):
        await insert(db, row(2, other, 1))


async def test_a_wrong_statement_is_not_translated(stored: tuple[Database, str]) -> None:
    db, _ = stored
    with pytest.raises(exc.DBAPIError) as caught:
        async with db.connect() as conn:
            await conn.execute(sa.text("SELECT no_such_column FROM events"))
    assert not isinstance(caught.value, StoreUnavailableError)


async def test_a_database_that_cannot_be_reached_is_unavailable(
    backend: str, tmp_path: Path, settings: Settings
) -> None:
    if backend == "postgresql":
        url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"  # nothing listens
    else:
        url = f"sqlite:///{tmp_path}/no/such/folder/evstore.db"
    before = set(threading.enumerate())
    db = Database(create_engine(settings.model_copy(update={"database_url": url})), 5.0)
    try:
        with pytest.raises(StoreUnavailableError):
            await db.head()
    finally:
        await db.dispose()
        # aiosqlite ends a failed connect on its own thread and then reports to this
        # event loop: wait for that thread while the loop still runs, or its report
        # fails on a closed loop during some later test.
        for thread in set(threading.enumerate()) - before:
            if "_connection_worker_thread" in thread.name:
                await asyncio.to_thread(thread.join, 10)


@pytest.mark.postgres_only
async def test_a_statement_timeout_is_unavailable(stored: tuple[Database, str]) -> None:
    db, _ = stored
    with pytest.raises(StoreUnavailableError):
        async with db.connect() as conn:
            await conn.execute(sa.text("SET statement_timeout = '50ms'"))
            await conn.execute(sa.text("SELECT pg_sleep(5)"))


@pytest.mark.postgres_only
async def test_a_read_only_database_is_unavailable(stored: tuple[Database, str]) -> None:
    db, _ = stored
    with pytest.raises(StoreUnavailableError, match="read-only"):
        async with db.connect(write=True) as conn, conn.begin():
            await conn.execute(sa.text("SET TRANSACTION READ ONLY"))
            await conn.execute(sa.update(events).values(type="Changed"))


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_write_lock_held_elsewhere_is_unavailable(
    database_url: str, settings: Settings
) -> None:
    impatient = settings.model_copy(update={"statement_timeout_seconds": 0.2})
    db = Database(create_engine(impatient))
    holder = sqlite3.connect(database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process's writer, holding the lock
        with pytest.raises(StoreUnavailableError, match="locked"):
            async with db.connect(write=True) as conn, conn.begin():
                await conn.execute(sa.text("UPDATE log_head SET position = position"))
    finally:
        holder.close()
        await db.dispose()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_read_only_file_is_unavailable(database_url: str, settings: Settings) -> None:
    path = database_url.removeprefix("sqlite:///")
    read_only = f"sqlite:///file:{path}?mode=ro&uri=true"
    db = Database(create_engine(settings.model_copy(update={"database_url": read_only})))
    try:
        with pytest.raises(StoreUnavailableError, match="readonly"):
            async with db.connect(write=True) as conn, conn.begin():
                await conn.execute(sa.text("UPDATE log_head SET position = position"))
    finally:
        await db.dispose()
