"""Tags on events (contract v2, section 1): each event's tags as JSON text in
`events.tags` (what reads return, in the order sent) and one row per tag in
`event_tags(tag, position)`, whose primary key is the B-tree that tag queries and
conditional appends range over (DESIGN section 8). Existing events have no tags.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Name = sa.String(200).with_variant(sa.String(200, collation="C"), "postgresql")


def upgrade() -> None:
    op.add_column("events", sa.Column("tags", sa.Text, nullable=False, server_default="[]"))
    op.create_table(
        "event_tags",
        sa.Column("tag", Name, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("tag", "position", name="event_tags_pkey"),
    )


def downgrade() -> None:
    op.drop_table("event_tags")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("tags")
