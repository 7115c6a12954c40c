"""Throughput per request: single-event appends against the no-op ceiling, one run.

    python -m bench.throughput --backends postgresql sqlite --seconds 6 --rounds 2

wrk -t1 -c64 (one wrk thread, so that wrk itself takes one core at most) drives the
no-op app served as evstore is served (bench/noop_app.py: uvloop, evstore's httptools
protocol, the same body parsed) and evstore's single-event appends to 1,000 streams,
interleaved: no-op, appends, appends, no-op for each round. The ceiling's two runs of
a round are printed so that an unstable one shows (compare them before trusting the
ratio: appends' mean over the ceiling's mean).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from bench.common import database, noop_evstore_protocol, server, wait_quiet, wrk

CONNECTIONS = 64


def measure(backend: str, seconds: float) -> dict[str, Any]:
    def noop() -> float:
        with noop_evstore_protocol() as (base, _):
            wrk(base, "append.lua", CONNECTIONS, 3, threads=1)  # warm-up
            return wrk(base, "append.lua", CONNECTIONS, seconds, threads=1)["rps"]

    ceiling = [noop()]
    appends = []
    with database(backend) as url, server(url) as (base, _):
        wrk(base, "append.lua", CONNECTIONS, 3, threads=1)  # warm-up
        for _ in range(2):
            appends.append(wrk(base, "append.lua", CONNECTIONS, seconds, threads=1)["rps"])
    ceiling.append(noop())
    floor = sum(ceiling) / len(ceiling)
    mean = sum(appends) / len(appends)
    return {
        "backend": backend,
        "noop_rps": [round(c) for c in ceiling],
        "append_rps": [round(a) for a in appends],
        "ratio": round(mean / floor, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    wait_quiet()
    for _ in range(args.rounds):
        for backend in args.backends:
            print(json.dumps(measure(backend, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
