"""Snapshots: the newest client-supplied state of a stream, one row per stream."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.domain.errors import OutOfRangeError, SnapshotNotFoundError, StaleSnapshotError
from app.domain.types import Snapshot
from app.store import queries
from app.store.database import Database
from app.store.queries import utc
from app.store.tables import json_value, snapshots

COLUMNS = (
    snapshots.c.stream_id,
    snapshots.c.version,
    sa.cast(snapshots.c.data, sa.Text).label("data"),
    sa.cast(snapshots.c.metadata, sa.Text).label("metadata"),
    snapshots.c.created_at,
)


class SnapshotStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def put(self, stream_id: str, version: int, data: str, metadata: str) -> Snapshot:
        """Store the snapshot unless a newer one is stored (StaleSnapshotError); the
        version must lie within the stream (OutOfRangeError)."""
        now = datetime.now(UTC)
        insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
        dialect = self.db.dialect
        values = insert(snapshots).values(
            stream_id=stream_id,
            version=version,
            data=json_value(data, dialect),
            metadata=json_value(metadata, dialect),
            created_at=now,
        )
        upsert = values.on_conflict_do_update(
            index_elements=["stream_id"],
            set_={
                "version": values.excluded.version,
                "data": values.excluded.data,
                "metadata": values.excluded.metadata,
                "created_at": values.excluded.created_at,
            },
            # Only ever forward: a concurrent older PUT cannot replace a newer one.
            where=snapshots.c.version <= values.excluded.version,
        ).returning(*COLUMNS)
        async with self.db.connect(write=True) as conn, conn.begin():
            current = await queries.stream_version(conn, stream_id)
            if version > current:
                detail = (
                    f"stream {stream_id!r} has no events; there is nothing to snapshot"
                    if current == 0
                    else f"stream {stream_id!r} is at version {current}; a snapshot needs "
                    f"1 <= version <= {current}"
                )
                raise OutOfRangeError("/version", detail)
            row = (await conn.execute(upsert)).one_or_none()
            if row is None:
                stored = await conn.execute(
                    sa.select(snapshots.c.version).where(snapshots.c.stream_id == stream_id)
                )
                raise StaleSnapshotError(stream_id, version, int(stored.scalar_one()))
        return _snapshot(row)

    async def get(self, stream_id: str) -> Snapshot:
        async with self.db.connect() as conn:
            row = (
                await conn.execute(sa.select(*COLUMNS).where(snapshots.c.stream_id == stream_id))
            ).one_or_none()
        if row is None:
            raise SnapshotNotFoundError(stream_id)
        return _snapshot(row)

    async def delete(self, stream_id: str) -> None:
        async with self.db.connect(write=True) as conn, conn.begin():
            await conn.execute(sa.delete(snapshots).where(snapshots.c.stream_id == stream_id))


def _snapshot(row: sa.Row[tuple[str, int, str, str, datetime]]) -> Snapshot:
    return Snapshot(
        stream_id=row.stream_id,
        version=int(row.version),
        data=row.data,
        metadata=row.metadata,
        created_at=utc(row.created_at),
    )
