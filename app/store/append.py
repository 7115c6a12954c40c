"""The append transaction: the only code that writes events.

Order inside one transaction (DESIGN sections 3 and 4):
1. lock the stream row (create it at version 0 when new) and read its version;
2. check the expected version (a failed check may still be an idempotent retry);
3. move the stream's version;
4. take positions from the one-row counter and insert the events, as late as possible
   and in one statement on PostgreSQL (PG_INSERT, shared with group commit), so the
   counter's row lock, which serialises every append in every process until commit,
   is held for one statement and the commit.
A unique violation on event_id rolls everything back; the caller then decides between
an idempotent replay and a 409.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["AsyncConnection"]

from app.domain.types import AppendedEvent, NewEvent, category_of
from app.store import driver
from app.store.tables import events, log_head, streams

SQLITE_BUMP = (
    sa.update(log_head)
    .where(log_head.c.id == 1)
    .values(position=log_head.c.position + sa.bindparam("n"))
    .returning(log_head.c.position)
)


async def lock_stream(conn: AsyncConnection, stream_id: str, category: str, now: datetime) -> int:
    """Lock the stream's row for this transaction and return its version (0 if new)."""
    select = sa.select(streams.c.version).where(streams.c.stream_id == stream_id)
    locked = select.with_for_update()
    version = (await conn.execute(locked)).scalar_one_or_none()
    if version is not None:
        return int(version)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    created = (
        insert(streams)
        .values(stream_id=stream_id, category=category, version=0, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["stream_id"])
        .returning(streams.c.version)
    )
    version = (await conn.execute(created)).scalar_one_or_none()
    if version is None:  # another transaction created it first; wait for its lock
        version = (await conn.execute(locked)).scalar_one()
    return int(version)


async def move_stream(conn: AsyncConnection, stream_id: str, version: int, now: datetime) -> None:
    await conn.execute(
        sa.update(streams)
        .where(streams.c.stream_id == stream_id)
        .values(version=version, updated_at=now)
    )


async def insert_events(
    conn: AsyncConnection,
    stream_id: str,
    base_version: int,
    new: Sequence[NewEvent],
    now: datetime,
) -> list[AppendedEvent]:
    """Take len(new) positions from the counter and insert the events at them."""
    positions = await insert_batch(conn, [(stream_id, base_version, new)], now)
    return [
        AppendedEvent(id=e.id, version=base_version + i + 1, position=position)
        for i, (e, position) in enumerate(zip(new, positions, strict=True))
    ]


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


# --- group commit: the same steps for a batch of requests -----------------------------

PG_INSERT = sa.text(
    """
    WITH head AS (
        UPDATE log_head SET position = position + :n WHERE id = 1 RETURNING position
    )
    INSERT INTO events (position, event_id, stream_id, category, version, type,
                        data, metadata, recorded_at)
    SELECT head.position - :n + e.ord, e.event_id, e.stream_id, e.category, e.version,
           e.type, e.data, e.metadata, :recorded_at
    FROM head,
         unnest(CAST(:event_ids AS uuid[]), CAST(:stream_ids AS text[]),
                CAST(:categories AS text[]), CAST(:versions AS bigint[]),
                CAST(:types AS text[]), CAST(:datas AS jsonb[]), CAST(:metadatas AS jsonb[]))
             WITH ORDINALITY AS e(event_id, stream_id, category, version, type, data,
                                  metadata, ord)
    ORDER BY e.ord
    RETURNING position
    """
)


# Group commit on PostgreSQL: after the lock, one statement creates the new streams at
# their final versions, moves the others, bumps the counter once and inserts every
# event; the events travel as one JSON array, which PostgreSQL parses faster than the
# driver could encode seven arrays. It answers how many streams it created (fewer
# than asked means another process created one meanwhile: the caller rolls back) and
# the positions of the events, in order.
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
                            data, metadata, recorded_at)
        SELECT head.position - %(n)s + e.o, e.i, e.s, e.c, e.v, e.t, e.d, e.m, %(now)s
        FROM head, jsonb_to_recordset(%(events)s::jsonb)
             AS e(o bigint, i uuid, s text, c text, v bigint, t text, d jsonb, m jsonb)
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
                f'"t":"{e.type}","d":{e.data},"m":{e.metadata}}}'
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
    """Create rows for new streams; False when another transaction created one first."""
    if not stream_ids:
        return True
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    created = await conn.execute(
        insert(streams)
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
    """One counter bump and one insert for every event of the batch, in order."""
    rows = [
        (stream_id, base + i + 1, e) for stream_id, base, new in appends for i, e in enumerate(new)
    ]
    n = len(rows)
    if conn.dialect.name == "postgresql":
        result = await conn.execute(
            PG_INSERT,
            {
                "n": n,
                "recorded_at": now,
                "event_ids": [e.id for _, _, e in rows],
                "stream_ids": [s for s, _, _ in rows],
                "categories": [category_of(s) for s, _, _ in rows],
                "versions": [v for _, v, _ in rows],
                "types": [e.type for _, _, e in rows],
                "datas": [e.data for _, _, e in rows],
                "metadatas": [e.metadata for _, _, e in rows],
            },
        )
        return [int(p) for p in result.scalars()]
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
            }
            for (stream_id, version, e), position in zip(rows, positions, strict=True)
        ],
    )
    return positions
