"""The writer's SQLite connection: a plain sqlite3 connection with a thread of its own.

Through aiosqlite every statement of the append transaction is a round trip between
the event loop and aiosqlite's thread (about 18 for an append of one event, which
cost four times the statements themselves). Here the whole transaction of a batch,
from BEGIN IMMEDIATE to COMMIT, runs as one call on the writer's thread: one hop per
batch. The statements do what app.store.append describes, written for sqlite3; sqlite3
errors come out as SQLAlchemy's (as if SQLAlchemy had run them), so that
app.store.failures translates them like any other.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from app.domain.types import Condition, NewEvent, category_of
from app.store import queries

T = TypeVar("T")

# Bound variables per statement, well under every SQLite build's limit.
CHUNK = 500

_DIALECT = SQLiteDialect_pysqlite()
# SQLAlchemy's own text for a DateTime on SQLite, so rows read the same either way.
_stamp = sa.DateTime(timezone=True).dialect_impl(_DIALECT).bind_processor(_DIALECT)

INSERT_EVENT = (
    "INSERT INTO events (position, event_id, stream_id, category, version, type, data,"
    " metadata, recorded_at, size, tags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_TAG = "INSERT INTO event_tags (tag, position) VALUES (?, ?)"
UPSERT_TRACKER = (
    "INSERT INTO trackers (name, position, updated_at) VALUES (?, ?, ?) ON CONFLICT (name)"
    " DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at"
)
BUMP = "UPDATE log_head SET position = position + ? WHERE id = 1 RETURNING position"
MOVE = "UPDATE streams SET version = ?, updated_at = ? WHERE stream_id = ?"


def stamp(now: datetime) -> str:
    assert _stamp is not None
    return str(_stamp(now))


class SqliteTransaction:
    """The statements of one write transaction, on the writer's thread."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def lock(
        self, stream_ids: Sequence[str], conditions: Sequence[Condition], trackers: Sequence[str]
    ) -> tuple[int, dict[str, int], list[int | None], dict[str, int]]:
        """The head, the versions of the existing streams and each condition's first
        match (BEGIN IMMEDIATE holds the file's write lock already: every other
        writer waits until this transaction ends)."""
        (head,) = self.conn.execute("SELECT position FROM log_head WHERE id = 1").fetchone()
        matches: list[int | None] = []
        for condition in conditions:
            after = condition.after or 0
            compiled, given = queries.first_match(condition.where, after, _DIALECT)
            params = compiled.construct_params(given) or {}
            args = [params[name] for name in compiled.positiontup or ()]
            (found,) = self.conn.execute(compiled.string, args).fetchone()
            matches.append(None if found is None else int(found))
        stood: dict[str, int] = {}
        for part in _chunks(trackers):
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                f"SELECT name, position FROM trackers WHERE name IN ({marks})", part
            )
            stood.update((n, int(p)) for n, p in rows)
        return int(head), self._versions(stream_ids), matches, stood

    def _versions(self, stream_ids: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for part in _chunks(stream_ids):
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                f"SELECT stream_id, version FROM streams WHERE stream_id IN ({marks})", part
            )
            found.update((s, int(v)) for s, v in rows)
        return found

    def find_event_ids(self, ids: Sequence[str]) -> dict[str, tuple[str, int, int]]:
        """The stored (stream_id, version, position) of each of these ids that exists."""
        found: dict[str, tuple[str, int, int]] = {}
        for part in _chunks(ids):
            marks = ",".join("?" * len(part))
            rows = self.conn.execute(
                "SELECT event_id, stream_id, version, position FROM events"
                f" WHERE event_id IN ({marks})",
                part,
            )
            found.update((str(i), (s, int(v), int(p))) for i, s, v, p in rows)
        return found

    def write_batch(
        self,
        before: dict[str, int],
        after: dict[str, int],
        appends: Sequence[tuple[str, int, Sequence[NewEvent]]],
        now: datetime,
        trackers: dict[str, int] | None = None,
    ) -> list[int] | None:
        """As app.store.pg_write's write_batch: create and move the streams, take the
        positions from the counter, insert the events; None when another process
        created one of the new streams first."""
        at = stamp(now)
        created = sorted(s for s in after if s not in before)
        for s in created:
            made = self.conn.execute(
                "INSERT INTO streams (stream_id, category, version, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (stream_id) DO NOTHING",
                (s, category_of(s), after[s], at, at),
            )
            if made.rowcount != 1:
                return None
        moved = [(v, at, s) for s, v in after.items() if s in before and v != before[s]]
        if moved:
            self.conn.executemany(MOVE, moved)
        n = sum(len(new) for _, _, new in appends)
        (last,) = self.conn.execute(BUMP, (n,)).fetchone()
        position = int(last) - n
        rows = []
        tags: list[tuple[str, int]] = []
        for stream_id, base, new in appends:
            category = category_of(stream_id)
            for i, e in enumerate(new, start=1):
                position += 1
                rows.append(
                    (position, e.id, stream_id, category, base + i, e.type, e.data,
                     e.metadata, at, e.size, e.tags_json)
                )  # fmt: skip
                tags.extend((t, position) for t in e.tags)
        self.conn.executemany(INSERT_EVENT, rows)
        if tags:
            self.conn.executemany(INSERT_TAG, tags)
        if trackers:
            self.conn.executemany(UPSERT_TRACKER, [(n, p, at) for n, p in trackers.items()])
        return list(range(int(last) - n + 1, int(last) + 1))


class SqliteWriteConnection:
    """One sqlite3 connection for the writer, used on one thread of its own."""

    def __init__(self, url: sa.URL, busy_timeout: float) -> None:
        self.url = url
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="evstore-sqlite-writer")

    async def transaction(self, body: Callable[[SqliteTransaction], T]) -> T:
        """Run `body` inside BEGIN IMMEDIATE ... COMMIT on the writer's thread;
        any error rolls back. sqlite3 errors come out as SQLAlchemy's."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._transaction, body)

    async def find_event_ids(self, ids: Sequence[str]) -> dict[str, tuple[str, int, int]]:
        """The stored (stream_id, version, position) of each of these ids that exists."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._find, ids)

    def _find(self, ids: Sequence[str]) -> dict[str, tuple[str, int, int]]:
        try:
            return SqliteTransaction(self._connection()).find_event_ids(ids)
        except sqlite3.Error as e:
            raise _as_sqlalchemy(e) from e

    def _transaction(self, body: Callable[[SqliteTransaction], T]) -> T:
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = body(SqliteTransaction(conn))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        self._discard()
                raise
            return result
        except sqlite3.Error as e:
            raise _as_sqlalchemy(e) from e

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            args, kwargs = _DIALECT.create_connect_args(self.url)
            kwargs.update(isolation_level=None, check_same_thread=False, timeout=self.busy_timeout)
            conn: sqlite3.Connection = sqlite3.connect(*args, **kwargs)  # type: ignore[call-overload]
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            except sqlite3.Error:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        """Close the connection; a later transaction opens a new one."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._discard)


def _as_sqlalchemy(error: sqlite3.Error) -> exc.DBAPIError:
    wrapped: Any = exc.DBAPIError.instance(
        "", None, error, sqlite3.Error, hide_parameters=True, dialect=_DIALECT
    )
    return wrapped  # type: ignore[no-any-return]


def _chunks(values: Sequence[str]) -> list[list[str]]:
    return [list(values[i : i + CHUNK]) for i in range(0, len(values), CHUNK)]
