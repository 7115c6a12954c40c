"""Latency at one connection: one client appending in a loop on a keep-alive
connection, against a round trip to the same server that touches no database
(`GET /health/live`), in one run, interleaved (no-op, appends, appends, no-op).

    python -m bench.one_connection --backends postgresql sqlite --seconds 5

Appends go to one stream and to 1,000 streams (wrk -t1 -c1, bench/wrk/append.lua).
The figure is each p50 over the mean of the two no-op p50s. Durability settings are
the defaults: PostgreSQL with fsync and synchronous_commit on, SQLite in WAL mode
with synchronous=FULL (app/store/engine.py).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bench.common import database, server, wrk


def measure(backend: str, seconds: float) -> dict[str, Any]:
    with database(backend) as url, server(url) as (base, _):
        wrk(base, "append.lua", 1, 2)  # warm-up
        noop = [wrk(base, "live_check.lua", 1, seconds)["p50_ms"]]
        one = wrk(base, "append.lua", 1, seconds, {"BENCH_STREAMS": "1"})
        many = wrk(base, "append.lua", 1, seconds, {"BENCH_STREAMS": "1000"})
        noop.append(wrk(base, "live_check.lua", 1, seconds)["p50_ms"])
    floor = sum(noop) / len(noop)
    return {
        "backend": backend,
        "noop_p50_ms": noop,
        "one_stream_p50_ms": one["p50_ms"],
        "one_stream_p99_ms": one["p99_ms"],
        "one_stream_ratio": one["p50_ms"] / floor,
        "streams_1000_p50_ms": many["p50_ms"],
        "streams_1000_p99_ms": many["p99_ms"],
        "streams_1000_ratio": many["p50_ms"] / floor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    for backend in args.backends:
        print(json.dumps(measure(backend, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
