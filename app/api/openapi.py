"""The OpenAPI document: FastAPI's, with our problem and request-body schemas."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app.api.models import (
    AcrossRequest,
    AppendRequest,
    CheckpointIn,
    EventsQueryIn,
    Problem,
    SnapshotIn,
    SubscriptionIn,
)

DESCRIPTION = (
    "An HTTP event store: append events to streams under optimistic concurrency "
    "(If-Match / If-None-Match), read streams and the gap-free global log. Errors are "
    "RFC 9457 problem details."
)


def _add_models(document: dict[str, Any], *models: type[BaseModel]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema


def build(app: FastAPI) -> dict[str, Any]:
    """Generate (once) and cache the document that /openapi.json serves."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title="evstore",
        version=app.version,
        description=DESCRIPTION,
        routes=app.routes,
        tags=[
            {"name": "streams", "description": "Append to and read streams"},
            {"name": "log", "description": "The global log, in position order"},
            {"name": "live", "description": "Server-sent events following the log"},
            {"name": "snapshots", "description": "The newest state of a stream, by version"},
            {"name": "subscriptions", "description": "Durable subscriptions and checkpoints"},
            {"name": "operations", "description": "Health and metrics"},
        ],
    )
    _add_models(
        document,
        Problem,
        AppendRequest,
        SnapshotIn,
        SubscriptionIn,
        CheckpointIn,
        EventsQueryIn,
        AcrossRequest,
    )
    app.openapi_schema = document
    return document
