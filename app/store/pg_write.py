"""The writer's PostgreSQL connection: one psycopg connection of its own, outside the pool.

Through the pool an append cost nine round trips: the checkout's ping, BEGIN, the
lock, the write, COMMIT, then a second checkout, ping, BEGIN, pg_notify and COMMIT to
publish the head. On this connection (autocommit, statements sent in pipeline mode)
a batch costs three: BEGIN with the lock of its streams, the write statement
(app.store.append.PG_WRITE_BATCH), and COMMIT with the pg_notify that tells the other
processes the new head (in a transaction of its own after the commit, so the append
transaction never takes NOTIFY's cluster-wide lock).

It is kept between batches without a ping. Every use is bounded by a deadline, at
which its socket is shut down (a stalled server never sees what is sent to it); any
failure closes it and the next batch opens a new one. A failure may only mean that it
was found dead after a quiet spell: `Use.stale` says so, and nothing of the batch was
sent before. psycopg errors come out as SQLAlchemy's, so that app.store.failures
translates them like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import exc
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

from app.domain.types import Condition, NewEvent, category_of
from app.store import append, queries
from app.store.engine import sever_driver

CHANNEL = "evstore_head"
NOTIFY = "SELECT pg_notify(%s, %s)"
FIND_IDS = (
    "SELECT event_id::text, stream_id, version, position FROM events"
    " WHERE event_id = ANY(%(ids)s::uuid[])"
)
_DIALECT = PGDialect_psycopg()  # type: ignore[no-untyped-call]
IDLE = TransactionStatus.IDLE

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


@dataclass
class Use:
    """One use of the connection: what a failure during it may mean."""

    reused: bool  # the connection was used before, and idle since
    expired: bool = False  # the deadline cut it
    sent: bool = False  # the batch's write was sent

    @property
    def stale(self) -> bool:
        """A failure can only be the kept connection found dead: retrying is safe."""
        return self.reused and not self.expired and not self.sent


class PgTransaction:
    """The statements of one write transaction on the writer's connection."""

    def __init__(self, conn: Connection, use: Use) -> None:
        self.conn = conn
        self.use = use

    async def lock(
        self, stream_ids: Sequence[str], conditions: Sequence[Condition], trackers: Sequence[str]
    ) -> tuple[int, dict[str, int], list[int | None], dict[str, int]]:
        """BEGIN; lock the log_head row, then the existing rows of these streams in
        stream id order (every batch of every process locks in this order: none
        deadlocks); then, under those locks, each condition's first match. One round
        trip. The head, the streams' versions, and the conditions' matches."""
        async with self.conn.pipeline():
            await self.conn.execute("BEGIN")
            head = await self.conn.execute(append.PG_LOCK_HEAD)
            locked = await self.conn.execute(append.PG_LOCK_STREAMS, {"ids": list(stream_ids)})
            tracked = await self.conn.execute(append.PG_LOCK_TRACKERS, {"names": list(trackers)})
            checks = [await self.conn.execute(*_first_match(c)) for c in conditions]
        row = await head.fetchone()
        assert row is not None
        versions = {stream_id: int(version) for stream_id, version in await locked.fetchall()}
        matches = []
        for check in checks:
            found = await check.fetchone()
            matches.append(None if found is None or found[0] is None else int(found[0]))
        stood = {name: int(position) for name, position in await tracked.fetchall()}
        return int(row[0]), versions, matches, stood

    async def find_event_ids(self, ids: Sequence[str]) -> dict[str, tuple[str, int, int]]:
        return await find_event_ids(self.conn, ids)

    async def write_batch(
        self,
        before: dict[str, int],
        after: dict[str, int],
        appends: Sequence[tuple[str, int, Sequence[NewEvent]]],
        now: datetime,
        trackers: dict[str, int] | None = None,
    ) -> list[int] | None:
        """Create the streams absent from `before`, move the others to their versions
        in `after`, bump the counter, insert the events and move the `trackers`, in one
        statement. Their
        positions, in order; None when another transaction created one of the new
        streams first (nothing usable was written: the caller rolls back)."""
        created = sorted(s for s in after if s not in before)
        moved = {s: v for s, v in after.items() if s in before and v != before[s]}
        batch_events, batch_tags = append.events_json(appends)
        params = {
            "now": now,
            "n": sum(len(new) for _, _, new in appends),
            "created_ids": created,
            "created_categories": [category_of(s) for s in created],
            "created_versions": [after[s] for s in created],
            "moved_ids": list(moved),
            "moved_versions": list(moved.values()),
            "events": batch_events,
            "tags": batch_tags,
            "trackers": orjson.dumps(
                [{"n": n, "p": p} for n, p in (trackers or {}).items()]
            ).decode(),
        }
        self.use.sent = True
        cursor = await self.conn.execute(append.PG_WRITE_BATCH, params)
        row = await cursor.fetchone()
        assert row is not None
        made, positions = row
        if made != len(created):
            return None
        return list(positions or ())


def _first_match(condition: Condition) -> tuple[str, dict[str, Any]]:
    compiled, params = queries.first_match(condition.where, condition.after or 0, _DIALECT)
    return compiled.string, dict(compiled.construct_params(params) or {})


async def find_event_ids(conn: Connection, ids: Sequence[str]) -> dict[str, tuple[str, int, int]]:
    """The stored (stream_id, version, position) of each of these ids that exists."""
    cursor = await conn.execute(FIND_IDS, {"ids": list(ids)})
    return {i: (s, int(v), int(p)) for i, s, v, p in await cursor.fetchall()}


class PgWriteConnection:
    """The writer's connection (see the module's text)."""

    def __init__(self, conninfo: str, connect_args: dict[str, Any], deadline: float) -> None:
        self.conninfo = conninfo
        self.connect_args = connect_args
        self.deadline = deadline
        self._conn: Connection | None = None

    @property
    def backend_pid(self) -> int:
        """The server process of the connection (its notifications carry it), or -1."""
        return self._conn.info.backend_pid if self._conn is not None else -1

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTransaction]:
        """A transaction for the block; committed, and the new head published, by
        `commit`; rolled back if the block ends otherwise."""
        async with self._use() as (conn, use):
            t = PgTransaction(conn, use)
            try:
                yield t
            except BaseException:
                if not conn.closed and not conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        await conn.execute("ROLLBACK")
                raise

    async def commit(self, t: PgTransaction, head: int) -> None:
        """COMMIT, and pg_notify the new head after it: one round trip."""
        async with t.conn.pipeline():
            await t.conn.execute("COMMIT")
            if head:
                await t.conn.execute(NOTIFY, (CHANNEL, str(head)))

    async def find_event_ids(self, ids: Sequence[str]) -> dict[str, tuple[str, int, int]]:
        """The same lookup outside a transaction."""
        async with self._use() as (conn, _):
            return await find_event_ids(conn, ids)

    @contextlib.asynccontextmanager
    async def _use(self) -> AsyncIterator[tuple[Connection, Use]]:
        use = Use(reused=self._conn is not None)
        try:
            async with asyncio.timeout(self.deadline):
                if self._conn is None:
                    self._conn = await Connection.connect(
                        self.conninfo, autocommit=True, **self.connect_args
                    )
            conn = self._conn
        except psycopg.Error as e:
            raise _as_sqlalchemy(e, lost=True) from e

        def expire() -> None:
            use.expired = True
            sever_driver(conn)

        timer = asyncio.get_running_loop().call_later(self.deadline, expire)
        try:
            yield conn, use
        except psycopg.Error as e:
            raise _as_sqlalchemy(e, lost=conn.closed or conn.broken) from e
        finally:
            timer.cancel()
            # Kept only when it is back to idle (a rolled-back batch that must be
            # decided alone keeps it); anything else opens a new one next time.
            if conn.closed or conn.broken or conn.info.transaction_status != IDLE:
                await self.close()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def _as_sqlalchemy(error: psycopg.Error, lost: bool) -> exc.DBAPIError:
    wrapped: Any = exc.DBAPIError.instance(
        "",
        None,
        error,
        psycopg.Error,
        hide_parameters=True,
        connection_invalidated=lost,
        dialect=_DIALECT,
    )
    return wrapped  # type: ignore[no-any-return]
