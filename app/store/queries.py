"""Read queries. `data` and `metadata` come back as JSON text and are never parsed.

Filtered log reads run one index range scan per filter value ((stream_id, position),
(category, position) or (type, position)), each limited, merged by position: a
filtered reader never scans the table, however rare its matches.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.compiler import SQLCompiler

from app.domain.names import MAX_VERSION
from app.domain.types import LogFilter, RecordedEvent, StreamInfo, Tracker
from app.store import driver
from app.store.tables import event_tags, events, log_head, streams, trackers


def utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without a zone; they were written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _stamp_text(column: Any, dialect: str) -> Any:
    # UTC text as the database prints it; stored_timestamp below makes it
    # RFC 3339 (PostgreSQL's to_char would do it in SQL, at several times the cost).
    if dialect == "postgresql":
        return sa.cast(sa.func.timezone("UTC", column), sa.Text)
    return column  # SQLite stores "YYYY-MM-DD HH:MM:SS.ffffff" (UTC) as text


def event_columns(dialect: str) -> tuple[Any, ...]:
    """The columns of a RecordedEvent, in its field order, all as text or integers."""
    return _as_recorded(events.c, dialect)


def _as_recorded(c: Any, dialect: str) -> tuple[Any, ...]:
    return (
        sa.cast(c.event_id, sa.Text),
        c.stream_id,
        c.type,
        c.version,
        c.position,
        sa.cast(c.data, sa.Text),
        sa.cast(c.metadata, sa.Text),
        _stamp_text(c.recorded_at, dialect),
        c.tags,
    )


RAW_COLUMNS = (
    events.c.event_id,
    events.c.stream_id,
    events.c.type,
    events.c.version,
    events.c.position,
    events.c.data,
    events.c.metadata,
    events.c.recorded_at,
    events.c.tags,
    events.c.size,
)


def bounded(
    page: sa.Select[Any], dialect: str, backward: bool = False, budget: int | None = None
) -> sa.Select[Any]:
    """`page` (a query of RAW_COLUMNS bounded in rows, in page order) cut where its
    events pass the byte budget (`budget`, or else the bind parameter `budget` of the
    statements compiled once): the rows whose running total
    of sizes stays within it, and always the first. Each row also carries how many rows
    `page` had, so the caller knows whether the page was cut. The data is cast to text
    only in the outermost select, so rows past the budget are never converted."""
    inner = page.subquery()
    order = inner.c.position.desc() if backward else inner.c.position
    windowed = sa.select(
        *inner.c,
        sa.func.sum(inner.c.size).over(order_by=order).label("running"),
        sa.func.row_number().over(order_by=order).label("row"),
        sa.func.count().over().label("total"),
    ).subquery()
    w = windowed.c
    limit: Any = sa.bindparam("budget") if budget is None else sa.literal_column(str(int(budget)))
    return (
        sa.select(*_as_recorded(w, dialect), w.total)
        .where(sa.or_(w.running <= limit, w.row == 1))
        .order_by(w.position.desc() if backward else w.position)
    )


def cut(rows: driver.Rows) -> bool:
    """Whether a page of `bounded` ended early at the byte budget."""
    return bool(rows) and len(rows) < rows[0][9]


def stored_timestamp(text: str) -> str:
    """RFC 3339 from a timestamp as the database prints it in UTC: PostgreSQL's
    `2026-11-27 03:04:05.1234` (trailing zeros of the fraction dropped, no fraction at
    all on a whole second) or SQLite's `2026-11-27 03:04:05.123400`."""
    fraction = text[19:26] if len(text) > 19 and text[19] == "." else "."
    return f"{text[:10]}T{text[11:19]}{fraction.ljust(7, '0')}Z"


def to_events(rows: driver.Rows) -> list[RecordedEvent]:
    """RecordedEvents from driver rows in event_columns order; the events of one append
    share a timestamp, so each distinct one is formatted once."""
    stamps: dict[str, str] = {}
    found = []
    for r in rows:
        stamp = stamps.get(r[7])
        if stamp is None:
            stamp = stamps[r[7]] = stored_timestamp(r[7])
        found.append(RecordedEvent(r[0], r[1], r[2], r[3], r[4], r[5], r[6], stamp, r[8]))
    return found


def _select_events(dialect: str) -> sa.Select[Any]:
    return sa.select(*event_columns(dialect))


def _select_raw() -> sa.Select[Any]:
    return sa.select(*RAW_COLUMNS)


async def head(conn: AsyncConnection) -> int:
    rows = await driver.fetch(conn, sa.select(log_head.c.position), {}, shape="head")
    return int(rows[0][0])


async def stream_version(conn: AsyncConnection, stream_id: str) -> int:
    query = sa.select(streams.c.version).where(streams.c.stream_id == sa.bindparam("stream_id"))
    rows = await driver.fetch(conn, query, {"stream_id": stream_id}, shape="stream_version")
    return int(rows[0][0]) if rows else 0


async def stream_events(
    conn: AsyncConnection, stream_id: str, start: int, limit: int, backward: bool, budget: int
) -> tuple[list[RecordedEvent], bool]:
    """Up to `limit` events from version `start` (inclusive), forward or backward, cut
    at `budget` bytes (see `bounded`); and whether the page was cut.

    Versions are dense (1..version), so the page is exactly the versions in
    [start, start + limit - 1] (backward: [start - limit + 1, start]): the query names
    that range rather than leaving it open. An open range let PostgreSQL, with stale
    or no statistics on a table that just grew, plan a bitmap scan of the whole
    stream and a sort, hundreds of times slower than reading one page."""
    low, high = (start - limit + 1, start) if backward else (start, start + limit - 1)
    high = min(high, MAX_VERSION)
    query = _stream_page_query(conn.dialect.name, backward)
    params = {"stream_id": stream_id, "low": low, "high": high, "budget": budget}
    shape = "stream_backward" if backward else "stream_forward"
    rows = await driver.fetch(conn, query, params, shape=shape)
    return to_events(rows), cut(rows)


@functools.cache
def _stream_page_query(dialect: str, backward: bool) -> sa.Select[Any]:
    # Built once: building the statement costs more than running it.
    version = events.c.version
    page = (
        _select_raw()
        .where(
            events.c.stream_id == sa.bindparam("stream_id"),
            version >= sa.bindparam("low"),
            version <= sa.bindparam("high"),
        )
        .order_by(version.desc() if backward else version)
    )
    return bounded(page, dialect, backward)


@functools.cache
def _log_page_query(dialect: str) -> sa.Select[Any]:
    page = (
        _select_raw()
        .where(
            events.c.position > sa.bindparam("after"),
            events.c.position <= sa.bindparam("last"),
        )
        .order_by(events.c.position)
    )
    return bounded(page, dialect)


async def event_at_version(
    conn: AsyncConnection, stream_id: str, version: int
) -> RecordedEvent | None:
    query = _select_events(conn.dialect.name).where(
        events.c.stream_id == sa.bindparam("stream_id"),
        events.c.version == sa.bindparam("version"),
    )
    params = {"stream_id": stream_id, "version": version}
    found = to_events(await driver.fetch(conn, query, params, shape="event_at_version"))
    return found[0] if found else None


async def event_at_position(conn: AsyncConnection, position: int) -> RecordedEvent | None:
    query = _select_events(conn.dialect.name).where(events.c.position == sa.bindparam("position"))
    params = {"position": position}
    found = to_events(await driver.fetch(conn, query, params, shape="event_at_position"))
    return found[0] if found else None


def filtered_log_query(
    dialect: str, after: int, head: int, limit: int, where: LogFilter, budget: int
) -> sa.Select[Any]:
    """The filtered log query, with its values in it (its shape varies with them)."""
    items = where.items
    if len(items) == 1 and not items[0].tags:
        return _one_item_query(dialect, after, head, limit, items[0], budget)
    # Tags, or several items (OR): each item's positions from its index ranges, at
    # most `limit` each, united; the page is the first `limit` of them.
    parts = [_item_positions(item, after, head, limit).subquery() for item in items]
    if len(parts) == 1:
        chosen = sa.select(parts[0].c.position)
    else:
        united = sa.union(*(sa.select(part.c.position) for part in parts)).subquery()
        chosen = sa.select(united.c.position).order_by(united.c.position).limit(limit)
    page = (
        _select_raw()
        .where(events.c.position.in_(chosen.scalar_subquery()))
        .order_by(events.c.position)
    )
    return bounded(page, dialect, budget=budget)


def _order(column: Any, backward: bool) -> Any:
    return column.desc() if backward else column


def backward_log_query(
    dialect: str, before: int, limit: int, where: LogFilter, budget: int
) -> sa.Select[Any]:
    """The newest `limit` events below `before` that `where` matches, newest first,
    cut at `budget` bytes: for an unfiltered read the exact range below `before`
    (positions are dense), else each item's index range read backward and united."""
    order = events.c.position.desc()
    if where.is_empty:
        page = (
            _select_raw()
            .where(events.c.position < before, events.c.position >= before - limit)
            .order_by(order)
        )
        return bounded(page, dialect, backward=True, budget=budget)
    parts = [
        _item_positions(item, 0, before - 1, limit, backward=True).subquery()
        for item in where.items
    ]
    united = sa.union(*(sa.select(part.c.position) for part in parts)).subquery()
    chosen = sa.select(united.c.position).order_by(united.c.position.desc()).limit(limit)
    page = _select_raw().where(events.c.position.in_(chosen.scalar_subquery())).order_by(order)
    return bounded(page, dialect, backward=True, budget=budget)


async def log_events_backward(
    conn: AsyncConnection, before: int, limit: int, where: LogFilter, budget: int
) -> tuple[list[RecordedEvent], bool]:
    """Up to `limit` events below `before`, newest first, that `where` matches, cut at
    `budget` bytes; and whether the page was cut."""
    if before <= 1:
        return [], False
    query = backward_log_query(conn.dialect.name, before, limit, where, budget)
    rows = await driver.fetch(conn, query, {})
    return to_events(rows), cut(rows)


def first_match(
    where: LogFilter, after: int, dialect: Dialect
) -> tuple[SQLCompiler, dict[str, Any]]:
    """`first_match_query` compiled once per shape of query (how many values each
    list of each item has) and dialect, and its parameters: a condition is checked on
    every conditional append, and compiling it cost more than running it."""
    items = where.items if not where.is_empty else (where,)
    shape = tuple((len(i.streams), len(i.categories), len(i.types), len(i.tags)) for i in items)
    params: dict[str, Any] = {"after": after}
    for item in items:
        for values in (item.streams, item.categories, item.types, item.tags):
            for value in values:
                params[f"p{len(params) - 1}"] = value
    return _first_match_compiled(shape, dialect), params


@functools.cache
def _first_match_compiled(
    shape: tuple[tuple[int, int, int, int], ...], dialect: Dialect
) -> SQLCompiler:
    names = (f"p{n}" for n in itertools.count())

    def placeholders(count: int) -> tuple[Any, ...]:
        return tuple(sa.bindparam(next(names)) for _ in range(count))

    items = [
        LogFilter(placeholders(s), placeholders(c), placeholders(t), placeholders(g))
        for s, c, t, g in shape
    ]
    query = first_match_query(LogFilter(any_of=tuple(items)), sa.bindparam("after"))  # type: ignore[arg-type]
    compiled: SQLCompiler = query.compile(dialect=dialect)
    return compiled


def first_match_query(where: LogFilter, after: int) -> sa.Select[Any]:
    """The lowest position above `after` of an event that `where` matches (NULL when
    none): each item's first match from its index range, the least of them. The
    condition of a conditional append, run after the log_head lock is granted."""
    parts = [
        _item_positions(item, after, MAX_VERSION, 1).subquery()
        for item in (where.items if not where.is_empty else (where,))
    ]
    united = sa.union_all(*(sa.select(part.c.position) for part in parts)).subquery()
    return sa.select(sa.func.min(united.c.position))


def _one_item_query(
    dialect: str, after: int, head: int, limit: int, where: LogFilter, budget: int
) -> sa.Select[Any]:
    base = _select_raw().where(events.c.position > after, events.c.position <= head)
    # The first non-empty filter drives the index; the others are plain conditions.
    filters = [
        (events.c.stream_id, where.streams),
        (events.c.category, where.categories),
        (events.c.type, where.types),
    ]
    present = [(column, values) for column, values in filters if values]
    (driver_column, driver_values), rest = present[0], present[1:]
    for column, values in rest:
        base = base.where(column.in_(values))
    parts = [
        base.where(driver_column == value).order_by(events.c.position).limit(limit).subquery()
        for value in dict.fromkeys(driver_values)
    ]
    if len(parts) == 1:
        only = parts[0]
        return bounded(sa.select(*only.c).order_by(only.c.position), dialect, budget=budget)
    merged = sa.union_all(*(sa.select(*part.c) for part in parts)).subquery()
    page = sa.select(*merged.c).order_by(merged.c.position).limit(limit)
    return bounded(page, dialect, budget=budget)


def _item_positions(
    item: LogFilter, after: int, head: int, limit: int, backward: bool = False
) -> sa.Select[Any]:
    """The first `limit` positions in (after, head] that one query item matches (the
    last `limit`, newest first, `backward`).

    With tags, the range of its first tag in event_tags' primary key drives; every
    other tag is a lookup of that key, and the other lists conditions on the event's
    row (found by its primary key). Without, as a filtered read: one index range per
    value of its first list, merged."""
    if not item.tags:
        lists = [
            (events.c.stream_id, item.streams),
            (events.c.category, item.categories),
            (events.c.type, item.types),
        ]
        present = [(column, values) for column, values in lists if values]
        if not present:
            return (
                sa.select(events.c.position)
                .where(events.c.position > after, events.c.position <= head)
                .order_by(_order(events.c.position, backward))
                .limit(limit)
            )
        (driver_column, driver_values), rest = present[0], present[1:]
        base = sa.select(events.c.position).where(
            events.c.position > after, events.c.position <= head
        )
        for column, values in rest:
            base = base.where(column.in_(values))
        parts = [
            base.where(driver_column == v)
            .order_by(_order(events.c.position, backward))
            .limit(limit)
            .subquery()
            for v in dict.fromkeys(driver_values)
        ]
        merged = sa.union_all(*(sa.select(part.c.position) for part in parts)).subquery()
        return (
            sa.select(merged.c.position).order_by(_order(merged.c.position, backward)).limit(limit)
        )
    first = event_tags.alias("t0")
    query = sa.select(first.c.position).where(
        first.c.tag == item.tags[0], first.c.position > after, first.c.position <= head
    )
    for k, tag in enumerate(item.tags[1:], start=1):
        other = event_tags.alias(f"t{k}")
        query = query.where(
            sa.exists().where(other.c.tag == tag, other.c.position == first.c.position)
        )
    conditions = [
        column.in_(values)
        for column, values in (
            (events.c.stream_id, item.streams),
            (events.c.category, item.categories),
            (events.c.type, item.types),
        )
        if values
    ]
    if conditions:
        query = query.join(events, events.c.position == first.c.position).where(*conditions)
    return query.order_by(_order(first.c.position, backward)).limit(limit)


async def log_events(
    conn: AsyncConnection, after: int, head: int, limit: int, where: LogFilter, budget: int
) -> tuple[list[RecordedEvent], bool]:
    """Up to `limit` events after `after` up to `head` that `where` matches, cut at
    `budget` bytes; and whether the page was cut."""
    if head <= after:
        return [], False
    if where.is_empty:
        # Positions are dense (1..head): the page is exactly (after, after + limit],
        # and naming that range keeps the plan an index range scan of `limit` rows
        # whatever the statistics say (see stream_events).
        query = _log_page_query(conn.dialect.name)
        params = {"after": after, "last": min(head, after + limit), "budget": budget}
        rows = await driver.fetch(conn, query, params, shape="log")
    else:
        query = filtered_log_query(conn.dialect.name, after, head, limit, where, budget)
        rows = await driver.fetch(conn, query, {})
    return to_events(rows), cut(rows)


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


async def trackers_page(
    conn: AsyncConnection, prefix: str | None, after: str | None, limit: int, exact: bool = False
) -> list[Tracker]:
    """Trackers in name order: the one named `prefix` (`exact`), or those whose name
    starts with `prefix`, after the name `after`."""
    query = sa.select(trackers)
    if exact:
        query = query.where(trackers.c.name == prefix)
    elif prefix:
        query = query.where(trackers.c.name >= prefix, trackers.c.name < _prefix_upper(prefix))
    if after is not None:
        query = query.where(trackers.c.name > after)
    rows = await conn.execute(query.order_by(trackers.c.name).limit(limit))
    return [Tracker(r.name, int(r.position), utc(r.updated_at)) for r in rows]
