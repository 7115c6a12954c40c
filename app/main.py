"""The application factory. Nothing is built at import time: the lifespan builds the
engine and store from the settings and disposes of them at shutdown. `evstore serve`
runs `create_served_app`, which also settles the heap once the app has started."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api import (
    across,
    docs,
    live,
    log,
    ops,
    problems,
    query,
    snapshots,
    streams,
    subscriptions,
)
from app.api import openapi as openapi_document
from app.api.front import build_front
from app.api.metrics import Metrics
from app.live.broadcaster import Broadcaster
from app.settings import Settings
from app.store.bootstrap import open_store
from app.store.migrations import check_schema, upgrade


class Evstore(FastAPI):
    """FastAPI with evstore's front (app/api/front.py) as its middleware stack."""

    def __init__(
        self, settings: Settings, metrics: Metrics, fast_append: bool = True, **options: Any
    ) -> None:
        super().__init__(**options)
        self.settings = settings
        self.metrics = metrics
        self.fast_append = fast_append

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # HTTP enters the front directly: FastAPI's own __call__ only adds its native
        # telemetry (OpenTelemetry, which evstore does not configure), and checking
        # that it is off costs every request several microseconds.
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        await self.middleware_stack(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        """The front, around FastAPI's own stack; what is registered with
        add_middleware sits in the front, so appends pass through it too."""
        registered, self.user_middleware = self.user_middleware, []
        try:
            fastapi_stack = super().build_middleware_stack()
        finally:
            self.user_middleware = registered
        return build_front(
            self, fastapi_stack, registered, self.settings, self.metrics, self.fast_append
        )


def create_app(settings: Settings | None = None, fast_append: bool = True) -> FastAPI:
    """Build the service. `uvicorn --factory app.main:create_app` reads EVSTORE_*.
    `fast_append=False` sends appends through FastAPI too (the tests prove both
    paths answer alike)."""
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await asyncio.to_thread(upgrade, settings.database_url)
        else:
            await asyncio.to_thread(check_schema, settings.database_url)
        async with open_store(settings, on_batch=metrics.batch_sizes.observe) as store:
            broadcaster = Broadcaster(
                store.events,
                settings.live_cache_events,
                settings.live_page_size,
                settings.live_cache_bytes,
            )
            store.notifier.subscribe(broadcaster.wake)
            app.state.store, app.state.broadcaster = store.events, broadcaster
            app.state.snapshots, app.state.subscriptions = store.snapshots, store.subscriptions
            await broadcaster.start()
            try:
                yield
            finally:
                await broadcaster.stop()

    app = Evstore(
        settings,
        metrics,
        fast_append,
        title="evstore",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # app/api/docs.py serves /docs without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(snapshots.router)  # before streams: "snapshot" is not a version
    app.include_router(streams.router)
    app.include_router(live.router)  # before log: /events/live is not a position
    app.include_router(across.router)
    app.include_router(across.trackers_router)
    app.include_router(query.router)  # before log: /events/query is not a position
    app.include_router(log.router)
    app.include_router(subscriptions.router)
    app.include_router(ops.router)
    app.include_router(docs.router)
    problems.install(app)

    def openapi() -> dict[str, Any]:
        return openapi_document.build(app)

    app.openapi = openapi  # type: ignore[method-assign]
    return app


# The cyclic collector after startup (see `settle_heap`): a first generation this big
# lets a request's garbage die young, and the oldest generation is visited rarely.
GC_THRESHOLDS = (20_000, 20, 50)


def settle_heap() -> None:
    """Once the app has started: move what startup built (modules, routes, the schema,
    pools) out of the collector's sight with gc.freeze, and collect less often. A full
    collection visits every tracked object; with thousands of live subscribers that is
    a million objects and a pause of several hundred milliseconds, which appends felt
    as their p99 (bench/live_scale.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def create_served_app() -> FastAPI:
    """The app as `evstore serve` runs it in each worker: create_app from EVSTORE_*,
    and `settle_heap` once its lifespan has started."""
    app = create_app()
    started = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(served: FastAPI) -> AsyncIterator[None]:
        async with started(served):
            settle_heap()
            yield

    app.router.lifespan_context = lifespan
    return app
