"""The application factory. Nothing is built at import time: the lifespan builds the
engine and store from the settings and disposes of them at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api import docs, live, log, ops, problems, snapshots, streams, subscriptions
from app.api import openapi as openapi_document
from app.api.fast_path import FastAppend
from app.api.limits import BodyLimit
from app.api.metrics import Metrics
from app.api.observe import ObserveMiddleware
from app.live.broadcaster import Broadcaster
from app.settings import Settings
from app.store.engine import create_engine, operation_deadline
from app.store.event_store import EventStore
from app.store.migrations import check_schema, upgrade
from app.store.notifier import LocalNotifier, PostgresNotifier
from app.store.snapshots import SnapshotStore
from app.store.subscriptions import SubscriptionStore
from app.store.writer import Writer


class Evstore(FastAPI):
    """FastAPI behind evstore's front: request ids, access lines and metrics, the body
    limit and the append route, all before FastAPI's own middleware stack (whose
    per-request work, telemetry checks and error wrapping included, an append does
    not need). Everything but an append then enters FastAPI as usual."""

    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.front is None or scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
        else:
            await self.front(scope, receive, send)

    async def enter_fastapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. `uvicorn --factory app.main:create_app` reads EVSTORE_*."""
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_start:
            await asyncio.to_thread(upgrade, settings.database_url)
        else:
            await asyncio.to_thread(check_schema, settings.database_url)
        engine = create_engine(settings)
        store = EventStore(engine, deadline=operation_deadline(settings))
        notifier = (
            PostgresNotifier(
                store,
                settings.database_url,
                settings.live_poll_seconds,
                settings.connect_timeout_seconds,
            )
            if engine.dialect.name == "postgresql"
            else LocalNotifier(store, settings.live_poll_seconds)
        )
        broadcaster = Broadcaster(store, settings.live_cache_events, settings.live_page_size)
        writer = Writer(store, on_batch=metrics.batch_sizes.observe)
        store.batcher = writer.append
        store.after_commit.append(notifier.published)
        notifier.subscribe(broadcaster.wake)
        app.state.store, app.state.notifier, app.state.broadcaster = store, notifier, broadcaster
        app.state.snapshots = SnapshotStore(store)
        app.state.subscriptions = SubscriptionStore(store)
        try:
            await broadcaster.start()
            await notifier.start()
            await writer.start()
            yield
        finally:
            await writer.stop()
            await broadcaster.stop()
            await notifier.stop()
            await engine.dispose()

    app = Evstore(
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
    app.include_router(log.router)
    app.include_router(subscriptions.router)
    app.include_router(ops.router)
    app.include_router(docs.router)
    problems.install(app, settings.retry_after_seconds)
    app.add_exception_handler(405, _method_not_allowed)
    # In front of FastAPI's own stack, so that appends skip all of it (app/api/fast_path.py)
    app.front = ObserveMiddleware(
        BodyLimit(FastAppend(app.enter_fastapi, app), settings.max_body_bytes), metrics
    )

    def openapi() -> dict[str, Any]:
        return openapi_document.build(app)

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def _method_not_allowed(request: Request, _: Exception) -> Response:
    # Starlette names only the first route that matched the path; probe every method.
    allowed = sorted(
        method
        for method in ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.routes
        )
    )
    return problems.problem(
        405,
        "method-not-allowed",
        "Method not allowed",
        f"{request.method} is not allowed here; allowed: {', '.join(allowed)}",
        {"Allow": ", ".join(allowed)},
    )
