"""Operations: health and Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from app.api.deps import (
    BroadcasterDep,
    MetricsDep,
    SettingsDep,
    StoreDep,
    SubscriptionStoreDep,
)
from app.api.models import HealthOut
from app.domain.errors import StoreUnavailableError
from app.live.wire import dumps

router = APIRouter(tags=["operations"])


@router.get(
    "/health",
    operation_id="health",
    response_model=HealthOut,
    responses={
        503: {
            "description": "The database cannot be reached, or the append writer stopped",
            "model": HealthOut,
        }
    },
)
async def health(store: StoreDep, settings: SettingsDep) -> Response:
    """Whether the service can reach its database and take appends, and the head."""
    body: dict[str, Any]
    try:
        head = await store.ping()
    except StoreUnavailableError:
        body = {"status": "unavailable", "database": "unreachable", "head": None}
        return _unavailable(body, settings)
    if not store.writing:
        body = {"status": "unavailable", "database": "ok", "head": head, "writer": "stopped"}
        return _unavailable(body, settings)
    body = {"status": "ok", "database": "ok", "head": head}
    return Response(dumps(body), 200, media_type="application/json")


def _unavailable(body: dict[str, Any], settings: SettingsDep) -> Response:
    headers = {"Retry-After": str(settings.retry_after_seconds)}
    return Response(dumps(body), 503, headers, media_type="application/json")


@router.get(
    "/health/live",
    operation_id="healthLive",
    response_model=HealthOut,
)
async def health_live() -> Response:
    """Liveness: the process serves HTTP (the database is not consulted)."""
    body = {"status": "ok", "database": "not checked", "head": None}
    return Response(dumps(body), 200, media_type="application/json")


@router.get(
    "/health/ready",
    operation_id="healthReady",
    response_model=HealthOut,
    responses={
        503: {
            "description": "The database cannot be reached, or the append writer stopped",
            "model": HealthOut,
        }
    },
)
async def health_ready(store: StoreDep, settings: SettingsDep) -> Response:
    """Readiness: the database answers and appends are taken (the same as /health)."""
    return await health(store, settings)


@router.get(
    "/metrics",
    operation_id="metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics(
    store: StoreDep,
    broadcaster: BroadcasterDep,
    subscriptions: SubscriptionStoreDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> Response:
    """Prometheus metrics of this process."""
    metrics.pool_checked_out.set(store.pool_checked_out())  # before this scrape's queries
    metrics.live_waiters.set(broadcaster.waiting)
    # When the database is down the gauges keep their last values; requests show it.
    with contextlib.suppress(StoreUnavailableError):
        head = await store.head()
        metrics.head.set(head)
        total, behind = await subscriptions.furthest_behind(settings.metrics_max_subscriptions)
        metrics.subscriptions.set(total)
        metrics.subscription_lag.clear()
        for name, position in behind:
            metrics.subscription_lag.labels(name).set(max(0, head - position))
    # Rendering is proportional to the series: off the event loop, which serves appends.
    text = await asyncio.to_thread(generate_latest, metrics.registry)
    return Response(text, media_type=CONTENT_TYPE_LATEST)
