"""Filtered log reads use an index: a filtered reader never scans the events table."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from app.domain.types import ANY_VERSION, LogFilter
from app.store import driver
from app.store.event_store import EventStore
from app.store.queries import backward_log_query, filtered_log_query
from tests.support.factories import new_event


@pytest.mark.parametrize(
    ("where", "index"),
    [
        (LogFilter(streams=("Order-1",)), "events_stream_id_position"),
        (LogFilter(categories=("Order",)), "events_category_position"),
        (LogFilter(types=("Placed",)), "events_type_position"),
        (
            LogFilter(categories=("Order", "User"), types=("Placed",)),
            "events_category_position|events_type_position",
        ),
        (LogFilter(streams=("Order-1", "Order-2", "User-9")), "events_stream_id_position"),
        (LogFilter(tags=("course:c1",)), "event_tags_pkey|sqlite_autoindex_event_tags_1"),
        (
            LogFilter(types=("Placed",), tags=("course:c1", "student:s1")),
            "event_tags_pkey|sqlite_autoindex_event_tags_1",
        ),
        (
            LogFilter(
                any_of=(
                    LogFilter(types=("Placed",), tags=("course:c1",)),
                    LogFilter(tags=("student:s1",)),
                    LogFilter(streams=("Order-1",)),
                )
            ),
            "event_tags_pkey|sqlite_autoindex_event_tags_1",
        ),
    ],
    ids=[
        "stream",
        "category",
        "type",
        "categories-and-type",
        "streams",
        "tag",
        "type-and-tags",
        "query-items",
    ],
)
async def test_filtered_read_plan_uses_the_filter_index(
    store: EventStore, where: LogFilter, index: str
) -> None:
    query = filtered_log_query(
        store.db.dialect, after=10, head=1_000_000, limit=100, where=where, budget=1 << 20
    )
    plan = await plan_without_a_scan(store, query)
    # One of the filters' own indexes, not merely a range scan over positions.
    assert any(name in plan for name in index.split("|")), plan


async def plan_without_a_scan(store: EventStore, query: sa.Select[Any]) -> str:
    """The plan of `query`, after checking it does not scan the events table."""
    sql = str(query.compile(store.db.engine, compile_kwargs={"literal_binds": True}))
    async with store.db.engine.connect() as conn:
        if store.db.dialect == "postgresql":
            # The table is tiny, so make scans unattractive; a plan without an index
            # would still have to scan.
            await conn.execute(sa.text("SET enable_seqscan = off"))
            plan = "\n".join(r[0] for r in await conn.execute(sa.text("EXPLAIN " + sql)))
            assert "Seq Scan on events" not in plan, plan
        else:
            rows = await conn.execute(sa.text("EXPLAIN QUERY PLAN " + sql))
            plan = "\n".join(str(r[-1]) for r in rows)
            assert "SCAN events" not in plan.replace("USING INDEX", ""), plan
    return plan


# Versions 11.. of Big-1 at positions 11.., as appends would have written them.
BULK_EVENTS = """
    WITH n AS (SELECT generate_series(11, 50010) AS i)
    INSERT INTO events (position, event_id, stream_id, category, version, type, data,
                        metadata, recorded_at)
    SELECT i, gen_random_uuid(), 'Big-1', 'Big', i, 'Happened', '{"n": 1}', '{}', now()
    FROM n;
    UPDATE streams SET version = 50010 WHERE stream_id = 'Big-1';
    UPDATE log_head SET position = 50010;
"""


def _scanned_rows(plan: dict) -> int:  # type: ignore[type-arg]
    """The most rows any node of an EXPLAIN ANALYZE (JSON) plan produced."""
    children = plan.get("Plans", [])
    return max([int(plan.get("Actual Rows", 0)), *(_scanned_rows(c) for c in children)])


@pytest.mark.postgres_only
async def test_a_page_reads_only_its_own_rows_without_statistics(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of the log or of a stream touches the rows of that page, even on a table
    that just grew and has no statistics, where an open range (position > after and
    <= head) was planned as a bitmap scan of everything after `after` plus a sort.
    The statements the store runs are recorded and run again under EXPLAIN ANALYZE."""
    await store.append("Big-1", [new_event() for _ in range(10)], ANY_VERSION)
    async with store.db.engine.begin() as conn:  # 50k more, faster than through appends
        for statement in BULK_EVENTS.split(";")[:-1]:
            await conn.execute(sa.text(statement))
    ran: list[tuple[str, Any]] = []
    run = driver.run

    async def recording(conn: Any, sql: str, args: Any) -> Any:
        ran.append((sql, args))
        return await run(conn, sql, args)

    monkeypatch.setattr(driver, "run", recording)
    pages = [
        len((await store.read_log(100, 1000, LogFilter())).events),
        len((await store.read_stream("Big-1", 5, 1000, backward=False)).events),
        len((await store.read_stream("Big-1", None, 1000, backward=True)).events),
        len((await store.read_stream("Big-1", 40_000, 1000, backward=True)).events),
    ]
    assert pages == [1000] * 4
    page_queries = [(sql, args) for sql, args in ran if "FROM events" in sql]
    assert len(page_queries) == 4
    async with store.db.engine.connect() as conn:
        raw: Any = (await conn.get_raw_connection()).driver_connection
        for sql, args in page_queries:
            cursor = await raw.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, args)
            [(plan,)] = await cursor.fetchall()
            assert _scanned_rows(plan[0]["Plan"]) <= 1000, (sql, args, plan)


async def test_the_newest_event_of_a_category_is_an_index_range_read_backward(
    store: EventStore,
) -> None:
    where = LogFilter(categories=("Order",))
    query = backward_log_query(store.db.dialect, 1_000_000, 1, where, 1 << 20)
    assert "events_category_position" in await plan_without_a_scan(store, query)
