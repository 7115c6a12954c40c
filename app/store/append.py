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


async def lock_streams(conn: AsyncConnection, stream_ids: Sequence[str]) -> dict[str, int]:
    """Lock the existing rows of these streams, in stream id order (so that batches in
    different processes never deadlock), and return their versions."""
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
