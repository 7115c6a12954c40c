"""The initial schema: streams, events, the log head, snapshots, subscriptions.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Name = sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql")
Json = sa.Text().with_variant(postgresql.JSONB(), "postgresql")
Uuid = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "streams",
        sa.Column("stream_id", Name, primary_key=True),
        sa.Column("category", Name, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    op.create_index("streams_category_stream_id", "streams", ["category", "stream_id"])
    # Positions come from log_head, never from a sequence or identity (DESIGN section 3).
    op.create_table(
        "events",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_id", Uuid, nullable=False),
        sa.Column("stream_id", Name, nullable=False),
        sa.Column("category", Name, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("type", Name, nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("metadata", Json, nullable=False),
        sa.Column("recorded_at", Timestamp, nullable=False),
        sa.UniqueConstraint("event_id", name="events_event_id_key"),
        sa.UniqueConstraint("stream_id", "version", name="events_stream_id_version_key"),
    )
    op.create_index("events_stream_id_position", "events", ["stream_id", "position"])
    op.create_index("events_category_position", "events", ["category", "position"])
    op.create_index("events_type_position", "events", ["type", "position"])
    log_head = op.create_table(
        "log_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="log_head_one_row"),
    )
    op.bulk_insert(log_head, [{"id": 1, "position": 0}])
    op.create_table(
        "snapshots",
        sa.Column("stream_id", Name, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("metadata", Json, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_table(
        "subscriptions",
        sa.Column("name", Name, primary_key=True),
        sa.Column("filter", Json, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )


def downgrade() -> None:
    for table in ("subscriptions", "snapshots", "log_head", "events", "streams"):
        op.drop_table(table)
