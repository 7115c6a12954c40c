"""The server's write coalescing (app/server.py): what one turn of the event loop
writes to a connection leaves in one write, in order, and nothing is lost on close."""

from __future__ import annotations

import asyncio

from app.server import CoalescingTransport


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default


async def next_turn() -> None:
    # call_soon callbacks scheduled in this turn run before a sleep(0) resumes us
    await asyncio.sleep(0)


async def test_writes_of_one_turn_leave_together_in_order() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 201 Created\r\n\r\n")
    transport.write(b'{"ok":')
    transport.write(b"true}")
    assert inner.writes == []
    await next_turn()
    assert inner.writes == [b'HTTP/1.1 201 Created\r\n\r\n{"ok":true}']
    transport.write(b"next")
    await next_turn()
    assert inner.writes[1:] == [b"next"]


async def test_close_sends_what_is_pending_first() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"last words")
    transport.close()
    assert (inner.writes, inner.closed) == ([b"last words"], True)
    await next_turn()
    assert inner.writes == [b"last words"]  # the scheduled flush finds nothing more


async def test_everything_else_is_the_wrapped_transport() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
    assert not transport.is_closing()
