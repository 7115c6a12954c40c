"""LiveResponse at the ASGI level, under a server without evstore's ON_DISCONNECT
extension (plain uvicorn, another ASGI server): a helper task waits for the
disconnect message, and the stream ends when it comes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from app.api.sse import LiveResponse, LiveStreams


class _Closing:
    """What LiveStreams needs of a broadcaster here."""

    closed = False

    def close(self) -> None:
        self.closed = True


async def test_without_the_extension_a_disconnect_message_ends_the_stream() -> None:
    gauge = Gauge("live", "open streams", registry=CollectorRegistry())
    streams = LiveStreams(_Closing(), gauge, send_timeout=30)  # type: ignore[arg-type]
    ended = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 1000\n\n"
            await asyncio.Event().wait()  # an idle tail: nothing more, ever
            yield b""
        finally:
            ended.set()

    sent: list[MutableMapping[str, Any]] = []
    streaming = asyncio.Event()  # the head and the first chunk are sent
    hang_up = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await hang_up.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        if len(sent) == 2:
            streaming.set()

    scope = {"type": "http", "method": "GET", "headers": [], "extensions": {}}
    response = LiveResponse(chunks(), streams)
    served = asyncio.create_task(response(scope, receive, send))
    await asyncio.wait_for(streaming.wait(), 10)
    assert gauge._value.get() == 1
    hang_up.set()
    await asyncio.wait_for(served, 10)
    assert ended.is_set() and gauge._value.get() == 0
