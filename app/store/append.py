"""The append transaction: what the writer's one transaction per batch does, and its
PostgreSQL statements. The only code that writes events.

The writer (app.store.writer) runs one transaction for a batch of appends, a single
append being a batch of one (DESIGN sections 3, 4 and 8), on a connection of its own
(app.store.pg_write, app.store.sqlite_write):
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

import orjson

from app.domain.types import NewEvent, category_of

# Group commit on PostgreSQL: after the lock, one statement creates the new streams at
# their final versions, moves the others, bumps the counter once and inserts every
# event; the events travel as one JSON array, which PostgreSQL parses faster than the
# driver could encode seven arrays. It answers how many streams it created (fewer
# than asked means another process created one meanwhile: the caller rolls back) and
# the positions of the events, in order. jsonb_to_recordset reads a JSON null as SQL
# NULL: data that is null is put back as the JSON null.
PG_LOCK_HEAD = "SELECT position FROM log_head WHERE id = 1 FOR UPDATE"
PG_LOCK_TRACKERS = """
    SELECT name, position FROM trackers WHERE name = ANY(%(names)s) ORDER BY name FOR UPDATE
"""
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
                            data, metadata, recorded_at, size, tags)
        SELECT head.position - %(n)s + e.o, e.i, e.s, e.c, e.v, e.t,
               COALESCE(e.d, 'null'), e.m, %(now)s, e.z, e.g
        FROM head, jsonb_to_recordset(%(events)s::jsonb)
             AS e(o bigint, i uuid, s text, c text, v bigint, t text, d jsonb, m jsonb,
                  z bigint, g text)
        RETURNING position
    ), tagged AS (
        INSERT INTO event_tags (tag, position)
        SELECT g.t, head.position - %(n)s + g.o
        FROM head, jsonb_to_recordset(%(tags)s::jsonb) AS g(o bigint, t text)
    ), tracked AS (
        INSERT INTO trackers (name, position, updated_at)
        SELECT k.n, k.p, %(now)s FROM jsonb_to_recordset(%(trackers)s::jsonb) AS k(n text, p bigint)
        ON CONFLICT (name) DO UPDATE SET position = excluded.position,
                                         updated_at = excluded.updated_at
    )
    SELECT (SELECT count(*) FROM created),
           (SELECT array_agg(position ORDER BY position) FROM inserted)
"""


def events_json(appends: Sequence[tuple[str, int, Sequence[NewEvent]]]) -> tuple[str, str]:
    """The batch's events as one JSON array for PG_WRITE_BATCH, and its tags as
    another ({o: the event's ordinal in the batch, t: a tag})."""
    # Ids are UUIDs, stream ids and types admit only characters JSON needs no escape
    # for, data and metadata are JSON text already: nothing is encoded twice.
    parts = []
    tags: list[dict[str, object]] = []
    o = 0
    for stream_id, base, new in appends:
        category = category_of(stream_id)
        for i, e in enumerate(new, start=1):
            o += 1
            if e.tags:
                stored = orjson.dumps(e.tags_json).decode()
                tags.extend({"o": o, "t": t} for t in e.tags)
            else:
                stored = '"[]"'
            parts.append(
                f'{{"o":{o},"i":"{e.id}","s":"{stream_id}","c":"{category}","v":{base + i},'
                f'"t":"{e.type}","d":{e.data},"m":{e.metadata},'
                f'"z":{e.size},"g":{stored}}}'
            )
    return "[" + ",".join(parts) + "]", orjson.dumps(tags).decode() if tags else "[]"
