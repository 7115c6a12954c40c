"""Request dependencies: the store and settings built by the app's lifespan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, Request

from app.api.metrics import Metrics
from app.api.problems import ValidationProblemError
from app.domain.names import is_name, is_tag, is_type
from app.domain.types import LogFilter
from app.live.broadcaster import Broadcaster
from app.settings import Settings
from app.store.event_store import EventStore
from app.store.snapshots import SnapshotStore
from app.store.subscriptions import SubscriptionStore


async def get_store(request: Request) -> EventStore:
    store: EventStore = request.app.state.store
    return store


async def get_snapshots(request: Request) -> SnapshotStore:
    snapshots: SnapshotStore = request.app.state.snapshots
    return snapshots


async def get_subscriptions(request: Request) -> SubscriptionStore:
    subscriptions: SubscriptionStore = request.app.state.subscriptions
    return subscriptions


async def get_broadcaster(request: Request) -> Broadcaster:
    broadcaster: Broadcaster = request.app.state.broadcaster
    return broadcaster


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


StoreDep = Annotated[EventStore, Depends(get_store)]
BroadcasterDep = Annotated[Broadcaster, Depends(get_broadcaster)]
SnapshotStoreDep = Annotated[SnapshotStore, Depends(get_snapshots)]
SubscriptionStoreDep = Annotated[SubscriptionStore, Depends(get_subscriptions)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def log_filter(
    streams: Sequence[str] | None,
    categories: Sequence[str] | None,
    types: Sequence[str] | None,
    max_length: int,
    tags: Sequence[str] | None = None,
) -> LogFilter:
    """Check filter values (every problem reported) and build the filter."""
    problems: list[dict[str, str]] = []
    for parameter, values, valid in (
        ("stream", streams, is_name),
        ("category", categories, is_name),
        ("type", types, is_type),
        ("tag", tags, lambda value, _: is_tag(value)),
    ):
        for value in values or ():
            if not valid(value, max_length):
                problems.append(
                    {"parameter": parameter, "detail": f"{value!r} is not a valid {parameter}"}
                )
    if problems:
        raise ValidationProblemError(problems)
    return LogFilter(
        tuple(streams or ()),
        tuple(categories or ()),
        tuple(types or ()),
        tuple(dict.fromkeys(tags or ())),
    )


def page_size(limit: int, settings: Settings) -> int:
    """The page size to serve: `limit`, capped at the max_page_size setting (the contract
    allows 1 to 1000; a lower setting serves shorter pages rather than refusing)."""
    return min(limit, settings.max_page_size)
