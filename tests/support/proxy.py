"""The test TCP proxy with one more fault: a stall. While stalled it accepts new
connections and reads from open ones but forwards nothing in either direction, as a
network path that silently drops packets does; `flow()` lets everything through again."""

from __future__ import annotations

import asyncio

from tests.support.tcp_proxy import TcpProxy


class StallingProxy(TcpProxy):
    def __init__(self, target_host: str, target_port: int) -> None:
        super().__init__(target_host, target_port)
        self._flowing = asyncio.Event()
        self._flowing.set()

    def stall(self) -> None:
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A new connection hangs before it reaches the server; it is tracked meanwhile,
        # so that `cut` closes it (else its writer outlives the test's event loop).
        self._writers.add(writer)
        await self._flowing.wait()
        if writer.transport.is_closing():  # cut while it hung
            return
        await super()._serve(reader, writer)

    async def _gate(self) -> None:
        await self._flowing.wait()
