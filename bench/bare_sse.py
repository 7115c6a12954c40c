"""The live-delivery floor: a bare in-memory SSE server with evstore's append and live
URLs and wire format, and nothing else (no database, no validation, no catch-up).

    uvicorn bench.bare_sse:app --loop uvloop --http httptools --no-access-log

POST /streams/{id} gives the body the next position, and puts one message on every
subscriber's queue; GET /events/live is an sse-starlette stream of those messages,
after `retry` and `caught-up` (the same framing bench.live_latency reads).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

position = 0
queues: set[asyncio.Queue[bytes]] = set()


async def append(request: Request) -> Response:
    global position
    body = await request.body()
    event = json.loads(body)["events"][0]
    position += 1
    data = json.dumps(
        {"stream_id": request.path_params["stream_id"], "position": position, **event},
        separators=(",", ":"),
    )
    message = f"id: {position}\ndata: {data}\n\n".encode()
    for queue in queues:
        queue.put_nowait(message)
    receipt = f'{{"events":[{{"position":{position}}}]}}'
    return Response(receipt, status_code=201, media_type="application/json")


async def live(request: Request) -> EventSourceResponse:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    queues.add(queue)

    async def messages() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            yield f'event: caught-up\nid: {position}\ndata: {{"position":{position}}}\n\n'.encode()
            while True:
                yield await queue.get()
        finally:
            queues.discard(queue)

    return EventSourceResponse(messages(), ping=15, sep="\n")


async def health(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


app = Starlette(
    routes=[
        Route("/streams/{stream_id}", append, methods=["POST"]),
        Route("/events/live", live),
        Route("/health", health),
    ]
)
