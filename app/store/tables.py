"""Table definitions, shared by the store's queries and the first Alembic migration."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

# Byte-wise ordering on PostgreSQL too, so listings sort the same on both backends.
Name = sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql")
Json = sa.Text().with_variant(postgresql.JSONB(), "postgresql")
Uuid = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def json_value(text: str, dialect: str) -> Any:
    """JSON text as a value for a Json column: cast to jsonb on PostgreSQL (binding the
    text through JSONB would encode it a second time), stored as is on SQLite."""
    if dialect == "postgresql":
        return sa.cast(sa.bindparam(None, text, type_=sa.Text), postgresql.JSONB)
    return text


streams = sa.Table(
    "streams",
    metadata,
    sa.Column("stream_id", Name, primary_key=True),
    sa.Column("category", Name, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)
sa.Index("streams_category_stream_id", streams.c.category, streams.c.stream_id)

events = sa.Table(
    "events",
    metadata,
    sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("event_id", Uuid, nullable=False),
    sa.Column("stream_id", Name, nullable=False),
    sa.Column("category", Name, nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("type", Name, nullable=False),
    sa.Column("data", Json, nullable=False),
    sa.Column("metadata", Json, nullable=False),
    sa.Column("recorded_at", Timestamp, nullable=False),
    # Characters of the data and metadata JSON (bytes for ASCII): pages are bounded by it.
    sa.Column("size", sa.BigInteger, nullable=False, server_default="0"),
    # The tags as JSON text, in the order sent (reads); event_tags indexes them.
    sa.Column("tags", sa.Text, nullable=False, server_default="[]"),
    sa.UniqueConstraint("event_id", name="events_event_id_key"),
    sa.UniqueConstraint("stream_id", "version", name="events_stream_id_version_key"),
)
sa.Index("events_stream_id_position", events.c.stream_id, events.c.position)
sa.Index("events_category_position", events.c.category, events.c.position)
sa.Index("events_type_position", events.c.type, events.c.position)

# One row per tag of an event: "events with tag t after position p" is a range of
# the primary key (DESIGN section 8).
event_tags = sa.Table(
    "event_tags",
    metadata,
    sa.Column("tag", Name, nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("tag", "position", name="event_tags_pkey"),
)

# The upstream position each tracker has processed (POST /events `track`).
trackers = sa.Table(
    "trackers",
    metadata,
    sa.Column("name", Name, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)

log_head = sa.Table(
    "log_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.CheckConstraint("id = 1", name="log_head_one_row"),
)

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("stream_id", Name, primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("data", Json, nullable=False),
    sa.Column("metadata", Json, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    sa.Column("name", Name, primary_key=True),
    sa.Column("filter", Json, nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
)
