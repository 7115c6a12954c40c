"""The size of each event (characters of its data and metadata JSON), for pages
bounded in bytes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("events", sa.Column("size", sa.BigInteger, nullable=False, server_default="0"))
    # The stored events get their size once, here; appends write it from then on.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("UPDATE events SET size = char_length(data::text) + char_length(metadata::text)")
    else:
        op.execute("UPDATE events SET size = length(data) + length(metadata)")


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("size")
