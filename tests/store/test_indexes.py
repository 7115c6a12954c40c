"""Filtered log reads use an index: a filtered reader never scans the events table."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.domain.types import LogFilter
from app.store.event_store import EventStore
from app.store.queries import filtered_log_query


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
    ],
    ids=["stream", "category", "type", "categories-and-type", "streams"],
)
async def test_filtered_read_plan_uses_the_filter_index(
    store: EventStore, where: LogFilter, index: str
) -> None:
    query = filtered_log_query(store.dialect, after=10, head=1_000_000, limit=100, where=where)
    sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
    async with store.engine.connect() as conn:
        if store.dialect == "postgresql":
            # The table is tiny, so make scans unattractive; a plan without an index
            # would still have to scan.
            await conn.execute(sa.text("SET enable_seqscan = off"))
            plan = "\n".join(r[0] for r in await conn.execute(sa.text("EXPLAIN " + sql)))
            assert "Seq Scan on events" not in plan, plan
        else:
            rows = await conn.execute(sa.text("EXPLAIN QUERY PLAN " + sql))
            plan = "\n".join(str(r[-1]) for r in rows)
            assert "SCAN events" not in plan.replace("USING INDEX", ""), plan
        # One of the filters' own indexes, not merely a range scan over positions.
        assert any(name in plan for name in index.split("|")), plan
