"""Concurrent head reads share database reads, and every caller still gets a head read
after its call began (nothing acknowledged before the call is missing from it)."""

from __future__ import annotations

import asyncio

import pytest

from app.domain.types import ANY_VERSION
from app.settings import Settings
from app.store.bootstrap import open_store
from tests.support.factories import new_event


async def test_a_burst_of_head_reads_costs_a_few_database_reads(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_store(settings) as store:
        reads = 0
        real = store.db.head

        async def counted() -> int:
            nonlocal reads
            reads += 1
            return await real()

        monkeypatch.setattr(store.db, "head", counted)
        for round_ in range(5):
            acked = await store.events.append("Head-1", [new_event()], ANY_VERSION)
            before = reads
            heads = await asyncio.gather(*(store.events.head() for _ in range(500)))
            # Every call began after the append was acknowledged: none may miss it.
            assert min(heads) >= acked.events[-1].position == round_ + 1
            assert reads - before <= 2, reads - before
