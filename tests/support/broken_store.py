"""A deliberately broken PostgreSQL append, to prove that the global-order tests can fail.

It draws positions from a plain sequence, as many event stores do, and after the insert
moves log_head to GREATEST(head, its own last position). Sequence values are handed out
before commit and transactions commit in any order, so a reader can be shown position p
while a lower position is still uncommitted, and a tailing reader skips it for good:
the bug DESIGN section 3 rules out. Everything else (versions, receipts) stays correct.

Install it on a test database with `install_sequence`, then patch
`app.store.append.PG_WRITE_BATCH` (the one append statement: batches, and single
appends as batches of one) with `BROKEN_PG_WRITE_BATCH`, and `PG_LOCK_HEAD` (the
writer locks log_head before anything else) with `UNLOCKED_HEAD` (pytest's
monkeypatch).
"""

from __future__ import annotations

import psycopg

from app.store.append import PG_WRITE_BATCH

SEQUENCE = "evstore_broken_position"
UNLOCKED_HEAD = "SELECT position FROM log_head WHERE id = 1"

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
        SELECT nextval('{SEQUENCE}'), e.i, e.s, e.c, e.v, e.t, COALESCE(e.d, 'null'), e.m,
               %(now)s
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
