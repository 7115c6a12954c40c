"""The append transaction's statements: the only code that writes events.

The writer (app.store.writer) runs one transaction for a batch of appends, a single
append being a batch of one (DESIGN sections 3, 4 and 8):
1. lock the existing stream rows of the batch, in stream id order (`lock_streams`);
2. the writer checks each expected version in memory, in arrival order; a failed
   check may still be an idempotent retry (`find_event_ids`);
3. create the new streams and move the others to their new versions, take positions
   from the one-row counter and insert the events (`write_batch`): on PostgreSQL one
   statement, so that the counter's row lock, which serialises every append in every
   process until commit, is held for that statement and the commit.
A unique violation on event_id or (stream_id, version) rolls everything back; the
writer then decides alone (app.store.failures names the violations).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["AsyncConnection"]

from app.domain.types import NewEvent, category_of
from app.store import driver
from app.store.tables import events, log_head, streams

SQLITE_BUMP = (
    sa.update(log_head)
    .where(log_head.c.id == 1)
    .values(position=log_head.c.position + sa.bindparam("n"))
    .returning(log_head.c.position)
)


async def find_event_ids(
    conn: AsyncConnection, ids: Sequence[str]
) -> dict[str, tuple[str, int, int]]:
    """The stored (stream_id, version, position) of each of these ids that exists."""
    rows = await conn.execute(
        sa.select(events.c.event_id, events.c.stream_id, events.c.version, events.c.position).where(
            events.c.event_id.in_(list(ids))
        )
    )
    return {str(r.event_id): (r.stream_id, int(r.version), int(r.position)) for r in rows}


# Group commit on PostgreSQL: after the lock, one statement creates the new streams at
# their final versions, moves the others, bumps the counter once and inserts every
# event; the events travel as one JSON array, which PostgreSQL parses faster than the
# driver could encode seven arrays. It answers how many streams it created (fewer
# than asked means another process created one meanwhile: the caller rolls back) and
# the positions of the events, in order. jsonb_to_recordset reads a JSON null as SQL
# NULL: data that is null is put back as the JSON null.
PG_LOCK_STREAMS = """
    SELECT stream_id, version FROM streams WHERE stream_id = ANY(%(ids)s)
    ORDER BY stream_id FOR UPDATE
"""
PG_WRITE_BATCH = """
    WITH created AS (
        INSERT INTO streams (stream_id, category, version, created_at, updated_at)
        SELECT c.stream_id, c.category, c.version, %(now)s, %(now)s
        FROM unnest(%(created_ids)s::text[], %(created_categories)s::text[],
                    %(created_versions)s::bigint[]) AS c(stream_id, category, version)
        ON CONFLICT (stream_id) DO NOTHING
        RETURNING 1
    ), moved AS (
        UPDATE streams SET version = m.version, updated_at = %(now)s
        FROM unnest(%(moved_ids)s::text[], %(moved_versions)s::bigint[])
             AS m(stream_id, version)
        WHERE streams.stream_id = m.stream_id
        RETURNING 1
    ), head AS (
        UPDATE log_head SET position = position + %(n)s WHERE id = 1 RETURNING position
    ), inserted AS (
        INSERT INTO events (position, event_id, stream_id, category, version, type,
                            data, metadata, recorded_at, size)
        SELECT head.position - %(n)s + e.o, e.i, e.s, e.c, e.v, e.t,
               COALESCE(e.d, 'null'), e.m, %(now)s, e.z
        FROM head, jsonb_to_recordset(%(events)s::jsonb)
             AS e(o bigint, i uuid, s text, c text, v bigint, t text, d jsonb, m jsonb,
                  z bigint)
        RETURNING position
    )
    SELECT (SELECT count(*) FROM created),
           (SELECT array_agg(position ORDER BY position) FROM inserted)
"""


def _events_json(appends: Sequence[tuple[str, int, Sequence[NewEvent]]]) -> str:
    # Ids are UUIDs, stream ids and types admit only characters JSON needs no escape
    # for, data and metadata are JSON text already: nothing is encoded twice.
    parts = []
    o = 0
    for stream_id, base, new in appends:
        category = category_of(stream_id)
        for i, e in enumerate(new, start=1):
            o += 1
            parts.append(
                f'{{"o":{o},"i":"{e.id}","s":"{stream_id}","c":"{category}","v":{base + i},'
                f'"t":"{e.type}","d":{e.data},"m":{e.metadata},'
                f'"z":{e.size}}}'
            )
    return "[" + ",".join(parts) + "]"


async def write_batch(
    conn: AsyncConnection,
    before: dict[str, int],
    after: dict[str, int],
    appends: Sequence[tuple[str, int, Sequence[NewEvent]]],
    now: datetime,
) -> list[int] | None:
    """Write the accepted appends of a batch, under the locks of lock_streams: create
    the streams absent from `before`, move the others to their versions in `after`,
    insert the events. Their positions, in order; None when another transaction
    created one of the new streams first (nothing usable was written: roll back)."""
    created = sorted(s for s in after if s not in before)
    moved = {s: v for s, v in after.items() if s in before and v != before[s]}
    if conn.dialect.name != "postgresql":
        if not await create_streams(conn, created, now):
            return None
        await move_streams(conn, {**moved, **{s: after[s] for s in created}}, now)
        return await insert_batch(conn, appends, now)
    n = sum(len(new) for _, _, new in appends)
    params = {
        "now": now,
        "n": n,
        "created_ids": created,
        "created_categories": [category_of(s) for s in created],
        "created_versions": [after[s] for s in created],
        "moved_ids": list(moved),
        "moved_versions": list(moved.values()),
        "events": _events_json(appends),
    }
    [(made, positions)] = await driver.run(conn, PG_WRITE_BATCH, params)
    if made != len(created):
        return None
    return list(positions)


async def lock_streams(conn: AsyncConnection, stream_ids: Sequence[str]) -> dict[str, int]:
    """Lock the existing rows of these streams, in stream id order (so that batches in
    different processes never deadlock), and return their versions."""
    if conn.dialect.name == "postgresql":
        locked = await driver.run(conn, PG_LOCK_STREAMS, {"ids": list(stream_ids)})
        return {stream_id: int(version) for stream_id, version in locked}
    rows = await conn.execute(
        sa.select(streams.c.stream_id, streams.c.version)
        .where(streams.c.stream_id.in_(list(stream_ids)))
        .order_by(streams.c.stream_id)
        .with_for_update()
    )
    return {r.stream_id: int(r.version) for r in rows}


async def create_streams(conn: AsyncConnection, stream_ids: Sequence[str], now: datetime) -> bool:
    """Create rows for new streams (SQLite); False when another transaction created
    one first."""
    if not stream_ids:
        return True
    created = await conn.execute(
        sqlite.insert(streams)
        .values(
            [
                {
                    "stream_id": s,
                    "category": category_of(s),
                    "version": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for s in stream_ids
            ]
        )
        .on_conflict_do_nothing(index_elements=["stream_id"])
        .returning(streams.c.stream_id)
    )
    return len(created.all()) == len(stream_ids)


async def move_streams(conn: AsyncConnection, versions: dict[str, int], now: datetime) -> None:
    """Move streams to their new versions (SQLite)."""
    if not versions:
        return
    await conn.execute(
        sa.update(streams)
        .where(streams.c.stream_id == sa.bindparam("sid"))
        .values(version=sa.bindparam("new_version"), updated_at=now),
        [{"sid": s, "new_version": v} for s, v in versions.items()],
    )


async def insert_batch(
    conn: AsyncConnection,
    appends: Sequence[tuple[str, int, Sequence[NewEvent]]],
    now: datetime,
) -> list[int]:
    """One counter bump and one insert for every event of the batch, in order
    (SQLite; on PostgreSQL PG_WRITE_BATCH does this and the streams in one statement)."""
    rows = [
        (stream_id, base + i + 1, e) for stream_id, base, new in appends for i, e in enumerate(new)
    ]
    n = len(rows)
    last = int((await conn.execute(SQLITE_BUMP, {"n": n})).scalar_one())
    positions = list(range(last - n + 1, last + 1))
    await conn.execute(
        sa.insert(events),
        [
            {
                "position": position,
                "event_id": e.id,
                "stream_id": stream_id,
                "category": category_of(stream_id),
                "version": version,
                "type": e.type,
                "data": e.data,
                "metadata": e.metadata,
                "recorded_at": now,
                "size": e.size,
            }
            for (stream_id, version, e), position in zip(rows, positions, strict=True)
        ],
    )
    return positions
