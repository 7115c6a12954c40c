"""A deliberately broken PostgreSQL append, to prove that the global-order tests can fail.

It draws positions from a plain sequence, as many event stores do, and after the insert
moves log_head to GREATEST(head, its own last position). Sequence values are handed out
before commit and transactions commit in any order, so a reader can be shown position p
while a lower position is still uncommitted, and a tailing reader skips it for good:
the bug DESIGN section 3 rules out. Everything else (versions, receipts) stays correct.

Install it on a test database with `install_sequence`, then patch
`app.store.append.PG_INSERT` (every append, alone or batched) with `BROKEN_PG_INSERT`
(pytest's monkeypatch).
"""

from __future__ import annotations

import psycopg
import sqlalchemy as sa

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


async def install_sequence(conn: psycopg.AsyncConnection[object]) -> None:
    """Create the position sequence, starting after the current head."""
    await conn.execute(f"CREATE SEQUENCE {SEQUENCE}")
    await conn.execute(
        f"SELECT setval('{SEQUENCE}', (SELECT position FROM log_head WHERE id = 1) + 1, false)"
    )
