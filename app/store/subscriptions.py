"""Durable subscriptions: a named filter and the position its consumer has processed.

The position moves only when the consumer stores it (at-least-once delivery); an
optional expected position makes the move conditional, so two consumers of one
subscription notice each other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.errors import (
    CheckpointMovedError,
    OutOfRangeError,
    SubscriptionConflictError,
    SubscriptionNotFoundError,
)
from app.domain.types import LogFilter, Subscription
from app.store import queries
from app.store.database import Database
from app.store.queries import utc
from app.store.tables import json_value, subscriptions

COLUMNS = (
    subscriptions.c.name,
    sa.cast(subscriptions.c.filter, sa.Text).label("filter"),
    subscriptions.c.position,
    subscriptions.c.updated_at,
)


def filter_json(where: LogFilter) -> str:
    """A canonical JSON form, so equal filters compare equal: the four lists, or, for
    a query of several items, {"query": [item, ...]} with each item canonical."""
    if where.any_of:
        items = sorted(_lists(item) for item in where.any_of)
        return json.dumps({"query": [json.loads(i) for i in items]}, separators=(",", ":"))
    return _lists(where)


def _lists(where: LogFilter) -> str:
    return json.dumps(
        {
            "stream": sorted(set(where.streams)),
            "category": sorted(set(where.categories)),
            "type": sorted(set(where.types)),
            "tag": sorted(set(where.tags)),
        },
        separators=(",", ":"),
    )


def _filter(text: str) -> LogFilter:
    raw = json.loads(text)
    if "query" in raw:
        return LogFilter(any_of=tuple(_item(item) for item in raw["query"]))
    return _item(raw)


def _item(raw: dict[str, list[str]]) -> LogFilter:
    return LogFilter(
        tuple(raw["stream"]),
        tuple(raw["category"]),
        tuple(raw["type"]),
        tuple(raw.get("tag", ())),  # stored before tags existed: none
    )


def _subscription(row: sa.Row[tuple[str, str, int, datetime]]) -> Subscription:
    return Subscription(row.name, _filter(row.filter), int(row.position), utc(row.updated_at))


class SubscriptionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, name: str, where: LogFilter, start: int | str
    ) -> tuple[Subscription, bool]:
        """Create the subscription at `start` ("beginning", "end" or a position), or
        return the existing one when its filter is the same; (subscription, created)."""
        canonical = _filter(filter_json(where))
        async with self.db.connect(write=True) as conn, conn.begin():
            existing = await self._get(conn, name)
            if existing is not None:
                if existing.filter != canonical:
                    raise SubscriptionConflictError(name)
                return existing, False
            head = await queries.head(conn)
            position = 0 if start == "beginning" else head if start == "end" else int(start)
            if position > head:
                raise OutOfRangeError("/start", f"start {position} is beyond the head ({head})")
            insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
            created = (
                await conn.execute(
                    insert(subscriptions)
                    .values(
                        name=name,
                        filter=json_value(filter_json(where), self.db.dialect),
                        position=position,
                        updated_at=datetime.now(UTC),
                    )
                    .on_conflict_do_nothing(index_elements=["name"])
                    .returning(*COLUMNS)
                )
            ).one_or_none()
            if created is not None:
                return _subscription(created), True
            existing = await self._get(conn, name)  # created concurrently a moment ago
        if existing is None or existing.filter != canonical:
            raise SubscriptionConflictError(name)
        return existing, False

    async def get(self, name: str) -> Subscription:
        async with self.db.connect() as conn:
            found = await self._get(conn, name)
        if found is None:
            raise SubscriptionNotFoundError(name)
        return found

    @staticmethod
    async def _get(conn: AsyncConnection, name: str) -> Subscription | None:
        row = (
            await conn.execute(sa.select(*COLUMNS).where(subscriptions.c.name == name))
        ).one_or_none()
        return None if row is None else _subscription(row)

    async def list(self, after: str | None, limit: int) -> list[Subscription]:
        query = sa.select(*COLUMNS).order_by(subscriptions.c.name).limit(limit)
        if after is not None:
            query = query.where(subscriptions.c.name > after)
        async with self.db.connect() as conn:
            return [_subscription(r) for r in await conn.execute(query)]

    async def furthest_behind(self, limit: int) -> tuple[int, Sequence[tuple[str, int]]]:
        """How many subscriptions there are, and the (name, position) of the `limit`
        whose checkpoints are lowest (the most lag), for metrics of bounded size."""
        count = sa.select(sa.func.count()).select_from(subscriptions)
        lowest = (
            sa.select(subscriptions.c.name, subscriptions.c.position)
            .order_by(subscriptions.c.position, subscriptions.c.name)
            .limit(limit)
        )
        async with self.db.connect() as conn:
            total = int((await conn.execute(count)).scalar_one())
            rows = [(r.name, int(r.position)) for r in await conn.execute(lowest)]
        return total, rows

    async def delete(self, name: str) -> None:
        async with self.db.connect(write=True) as conn, conn.begin():
            await conn.execute(sa.delete(subscriptions).where(subscriptions.c.name == name))

    async def checkpoint(
        self, name: str, position: int, expected: frozenset[int] | None, raw: str = ""
    ) -> Subscription:
        """Store `position` as processed (0 <= position <= head). With `expected`, only
        if the stored position is one of those (else CheckpointMovedError)."""
        async with self.db.connect(write=True) as conn, conn.begin():
            head = await queries.head(conn)
            if position > head:
                raise OutOfRangeError(
                    "/position", f"position {position} is beyond the head ({head})"
                )
            update = (
                sa.update(subscriptions)
                .where(subscriptions.c.name == name)
                .values(position=position, updated_at=datetime.now(UTC))
                .returning(*COLUMNS)
            )
            if expected is not None:
                update = update.where(subscriptions.c.position.in_(list(expected)))
            row = (await conn.execute(update)).one_or_none()
            if row is None:
                current = await self._get(conn, name)
                if current is None:
                    raise SubscriptionNotFoundError(name)
                raise CheckpointMovedError(name, raw, current.position)
        return _subscription(row)
