"""Conditional appends (DCB) next to unconditional ones of the same size, in process.

    python -m bench.dcb --backends postgresql sqlite --seconds 5

Each writer appends one event tagged with its own boundary (`account:<writer>`); the
conditional variant carries the condition "no event of this boundary after the
position I last saw" (a query that selects the writer's own handful of events), so
no append ever fails. 1 and 16 writers, order: unconditional, conditional,
conditional, unconditional, through the store's writer (`open_store`), on a fresh
database per backend. The figure is appends per second and the ratio of the means.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

from app.domain.types import ANY_VERSION, Condition, LogFilter, NewEvent
from app.settings import Settings
from app.store.bootstrap import Store, open_store
from bench.common import database, wait_quiet


def event(writer: int) -> NewEvent:
    return NewEvent(str(uuid.uuid4()), "Moved", '{"amount":1}', "{}", True, (f"account:{writer}",))


async def run(store: Store, writers: int, seconds: float, conditional: bool) -> float:
    deadline = time.monotonic() + seconds
    counts = [0] * writers
    start = await store.events.head()  # earlier runs wrote these boundaries too

    async def writer(w: int) -> None:
        seen = start
        where = LogFilter(tags=(f"account:{w}",))
        while time.monotonic() < deadline:
            if conditional:
                result = await store.events.append_across(
                    [(f"Account-{w}", event(w))], (), Condition(where, seen)
                )
                seen = result.head
            else:
                await store.events.append(f"Account-{w}", [event(w)], ANY_VERSION)
            counts[w] += 1

    started = time.monotonic()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return sum(counts) / (time.monotonic() - started)


async def measure(backend: str, seconds: float) -> list[dict[str, Any]]:
    rows = []
    with database(backend) as url:
        async with open_store(Settings(database_url=url)) as store:
            await run(store, 4, 1, True)  # warm-up
            for writers in (1, 16):
                plain = [await run(store, writers, seconds, False)]
                cond = [await run(store, writers, seconds, True)]
                cond.append(await run(store, writers, seconds, True))
                plain.append(await run(store, writers, seconds, False))
                rows.append(
                    {
                        "backend": backend,
                        "writers": writers,
                        "unconditional_per_s": [round(p) for p in plain],
                        "conditional_per_s": [round(c) for c in cond],
                        "ratio": round(sum(cond) / sum(plain), 3),
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    wait_quiet()
    for backend in args.backends:
        for row in asyncio.run(measure(backend, args.seconds)):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
