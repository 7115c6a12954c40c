"""A deliberately broken PostgreSQL append, to prove that the global-order tests can fail.

It draws positions from a plain sequence, as many event stores do, and after the insert
moves log_head to GREATEST(head, its own last position). Sequence values are handed out
before commit and transactions commit in any order, so a reader can be shown position p
while a lower position is still uncommitted, and a tailing reader skips it for good:
the bug DESIGN section 3 rules out. Everything else (versions, receipts) stays correct.

Install it on a test database with `install_sequence`, then patch
`app.store.append.PG_INSERT` (appends alone) with `BROKEN_PG_INSERT` and
`app.store.append.PG_WRITE_BATCH` (group commit) with `BROKEN_PG_WRITE_BATCH`
(pytest's monkeypatch).
"""

from __future__ import annotations

import psycopg
import sqlalchemy as sa

from app.store.append import PG_WRITE_BATCH

SEQUENCE = "evstore_broken_position"

# The log_head update reads `inserted`, so it runs after the insert (and after any row
# trigger in it): a held insert does not hold the counter row, unlike the real append.
BROKEN_PG_INSERT = sa.text(
    f"""
    WITH inserted AS (
        INSERT INTO events (position, event_id, stream_id, category, version, type,
                            data, metadata, recorded_at)
        SELECT nextval('{SEQUENCE}'), e.event_id, e.stream_id, e.category, e.version,
               e.type, e.data, e.metadata, :recorded_at
        FROM unnest(CAST(:event_ids AS uuid[]), CAST(:stream_ids AS text[]),
                    CAST(:categories AS text[]), CAST(:versions AS bigint[]),
                    CAST(:types AS text[]), CAST(:datas AS jsonb[]),
                    CAST(:metadatas AS jsonb[]))
                 WITH ORDINALITY AS e(event_id, stream_id, category, version, type, data,
                                      metadata, ord)
        ORDER BY e.ord
        RETURNING position, event_id
    ), moved AS (
        UPDATE log_head
        SET position = GREATEST(position, (SELECT max(position) FROM inserted))
        WHERE id = 1 AND CAST(:n AS bigint) > 0
    )
    SELECT position FROM inserted
    ORDER BY array_position(CAST(:event_ids AS uuid[]), event_id)
    """
)


# The group-commit statement with the same fault: its stream part as is, then
# positions from the sequence and the head moved after the insert; same parameters
# and answer as PG_WRITE_BATCH.
_STREAMS_PART = PG_WRITE_BATCH[: PG_WRITE_BATCH.index("), head AS (")]
BROKEN_PG_WRITE_BATCH = (
    _STREAMS_PART
    + f"""
    ), batch AS (
        SELECT * FROM jsonb_to_recordset(%(events)s::jsonb)
             AS e(o bigint, i uuid, s text, c text, v bigint, t text, d jsonb, m jsonb)
    ), inserted AS (
        INSERT INTO events (position, event_id, stream_id, category, version, type,
                            data, metadata, recorded_at)
        SELECT nextval('{SEQUENCE}'), e.i, e.s, e.c, e.v, e.t, e.d, e.m, %(now)s
        FROM batch AS e ORDER BY e.o
        RETURNING position, event_id
    ), head AS (
        UPDATE log_head
        SET position = GREATEST(position, (SELECT max(position) FROM inserted))
        WHERE id = 1 AND %(n)s::bigint > 0
    )
    SELECT (SELECT count(*) FROM created),
           (SELECT array_agg(inserted.position ORDER BY batch.o)
            FROM inserted JOIN batch ON batch.i = inserted.event_id)
"""
)


async def install_sequence(conn: psycopg.AsyncConnection[object]) -> None:
    """Create the position sequence, starting after the current head."""
    await conn.execute(f"CREATE SEQUENCE {SEQUENCE}")
    await conn.execute(
        f"SELECT setval('{SEQUENCE}', (SELECT position FROM log_head WHERE id = 1) + 1, false)"
    )
