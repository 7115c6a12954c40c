"""Read queries. `data` and `metadata` come back as JSON text and are never parsed.

Filtered log reads run one index range scan per filter value ((stream_id, position),
(category, position) or (type, position)), each limited, merged by position: a
filtered reader never scans the table, however rare its matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.types import LogFilter, RecordedEvent, StreamInfo
from app.store.tables import events, log_head, streams

EVENT_COLUMNS = (
    events.c.event_id,
    events.c.stream_id,
    events.c.type,
    events.c.version,
    events.c.position,
    sa.cast(events.c.data, sa.Text).label("data"),
    sa.cast(events.c.metadata, sa.Text).label("metadata"),
    events.c.recorded_at,
)


def utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; they were written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def to_event(row: Any) -> RecordedEvent:
    return RecordedEvent(
        id=str(row.event_id),
        stream_id=row.stream_id,
        type=row.type,
        version=int(row.version),
        position=int(row.position),
        data=row.data,
        metadata=row.metadata,
        recorded_at=utc(row.recorded_at),
    )


async def head(conn: AsyncConnection) -> int:
    return int((await conn.execute(sa.select(log_head.c.position))).scalar_one())


async def stream_version(conn: AsyncConnection, stream_id: str) -> int:
    found = await conn.execute(sa.select(streams.c.version).where(streams.c.stream_id == stream_id))
    return int(found.scalar_one_or_none() or 0)


async def stream_events(
    conn: AsyncConnection, stream_id: str, start: int | None, limit: int, backward: bool
) -> list[RecordedEvent]:
    query = sa.select(*EVENT_COLUMNS).where(events.c.stream_id == stream_id)
    if backward:
        if start is not None:
            query = query.where(events.c.version <= start)
        query = query.order_by(events.c.version.desc())
    else:
        query = query.where(events.c.version >= (start or 1)).order_by(events.c.version)
    return [to_event(r) for r in await conn.execute(query.limit(limit))]


async def event_at_version(
    conn: AsyncConnection, stream_id: str, version: int
) -> RecordedEvent | None:
    query = sa.select(*EVENT_COLUMNS).where(
        events.c.stream_id == stream_id, events.c.version == version
    )
    row = (await conn.execute(query)).one_or_none()
    return None if row is None else to_event(row)


async def event_at_position(conn: AsyncConnection, position: int) -> RecordedEvent | None:
    query = sa.select(*EVENT_COLUMNS).where(events.c.position == position)
    row = (await conn.execute(query)).one_or_none()
    return None if row is None else to_event(row)


def _log_query(after: int, head: int, limit: int, where: LogFilter) -> sa.Select[Any]:
    base = sa.select(*EVENT_COLUMNS).where(events.c.position > after, events.c.position <= head)
    if where.is_empty:
        return base.order_by(events.c.position).limit(limit)
    # The first non-empty filter drives the index; the others are plain conditions.
    filters = [
        (events.c.stream_id, where.streams),
        (events.c.category, where.categories),
        (events.c.type, where.types),
    ]
    present = [(column, values) for column, values in filters if values]
    (driver, driver_values), rest = present[0], present[1:]
    for column, values in rest:
        base = base.where(column.in_(values))
    parts = [
        base.where(driver == value).order_by(events.c.position).limit(limit).subquery()
        for value in dict.fromkeys(driver_values)
    ]
    if len(parts) == 1:
        only = parts[0]
        return sa.select(*only.c).order_by(only.c.position)
    merged = sa.union_all(*(sa.select(*part.c) for part in parts)).subquery()
    return sa.select(*merged.c).order_by(merged.c.position).limit(limit)


async def log_events(
    conn: AsyncConnection, after: int, head: int, limit: int, where: LogFilter
) -> list[RecordedEvent]:
    if head <= after:
        return []
    return [to_event(r) for r in await conn.execute(_log_query(after, head, limit, where))]


def _prefix_upper(prefix: str) -> str:
    # Every stream id character sorts below DEL, so this bounds all ids with the prefix.
    return prefix + "\x7f"


async def streams_page(
    conn: AsyncConnection,
    prefix: str | None,
    categories: Sequence[str],
    after: str | None,
    limit: int,
) -> list[StreamInfo]:
    query = sa.select(streams).where(streams.c.version > 0)
    if prefix:
        query = query.where(
            streams.c.stream_id >= prefix, streams.c.stream_id < _prefix_upper(prefix)
        )
    if categories:
        query = query.where(streams.c.category.in_(list(categories)))
    if after is not None:
        query = query.where(streams.c.stream_id > after)
    rows = await conn.execute(query.order_by(streams.c.stream_id).limit(limit))
    return [
        StreamInfo(
            stream_id=r.stream_id,
            category=r.category,
            version=int(r.version),
            created_at=utc(r.created_at),
            updated_at=utc(r.updated_at),
        )
        for r in rows
    ]
