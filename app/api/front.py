"""The front: the ASGI stack that every request enters.

`build_front` is the middleware stack (what starlette's `build_middleware_stack`
builds for an ordinary app), from the outside in:

1. `ObserveMiddleware`: the request id, the access line, the request metrics, and big
   bodies sent in chunks with a send timeout;
2. `BodyLimit`: a declared Content-Length over max_body_bytes is a 413 at once;
3. whatever is registered with `app.add_middleware`, in registration order
   (authentication and CORS go here);
4. `FastAppend`: `POST /streams/{stream_id}` is answered here;
5. FastAPI's own stack (its error and exception middleware, routing, dependencies)
   for every other request.

So nothing added to the front can miss appends: they pass through all of it, and
only FastAPI's per-request machinery is skipped for them.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from app.api.fast_path import FastAppend
from app.api.limits import BodyLimit
from app.api.metrics import Metrics
from app.api.observe import ObserveMiddleware
from app.settings import Settings


def build_front(
    api: FastAPI,
    fastapi_stack: ASGIApp,
    registered: Sequence[Middleware],
    settings: Settings,
    metrics: Metrics,
    fast_append: bool = True,
) -> ASGIApp:
    """The middleware stack of the service (see the module docstring)."""
    app = FastAppend(fastapi_stack, api) if fast_append else fastapi_stack
    for cls, args, kwargs in reversed(registered):
        app = cls(app, *args, **kwargs)
    app = BodyLimit(app, settings.max_body_bytes)
    return ObserveMiddleware(app, metrics, settings.send_timeout_seconds)
