"""The no-op parse ceiling: a FastAPI app whose one POST endpoint parses a JSON body
(the same ~200-byte body as a single-event append) and answers 201 with nothing done.

    uvicorn bench.noop_app:app --loop uvloop --http httptools --no-access-log
    python -m bench.noop_app PORT    # the same behind evstore's own protocol

It has the append's path, so the same wrk script drives it. The second form serves it
the way `evstore serve` serves evstore (uvloop, app/server.py's httptools protocol,
which coalesces each response's writes), for a ceiling with the same server settings.
"""

from __future__ import annotations

import json
import sys

from fastapi import FastAPI, Request
from starlette.responses import Response

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/streams/{stream_id}", status_code=201)
async def append(stream_id: str, request: Request) -> Response:
    body = json.loads(await request.body())
    if not isinstance(body, dict):
        return Response(status_code=400)
    return Response(b'{"ok":true}', status_code=201, media_type="application/json")


@app.get("/health")
async def health() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(
        "bench.noop_app:app",
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="app.server:LimitedHttpToolsProtocol",
        log_level="warning",
        access_log=False,
    )
