"""The hot paths of one tree, on one fresh PostgreSQL server, for before/after
comparisons between git worktrees run in turn (A B B A):

    python -m bench.hot_paths        # from the root of each worktree

Single-event appends at 64 and 16 connections, then (after seeding a log of 100k
events with a 10k-event stream) pages of 1000 of the log and pages of 100 of the
stream, at 16 connections; one run of --seconds each. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from bench.common import ROOT, database, server, wrk
from bench.run import LOG_EVENTS, READ_STREAM_EVENTS, seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6)
    seconds = parser.parse_args().seconds
    out: dict[str, object] = {"tree": str(ROOT)}
    with database("postgresql") as url, server(url) as (base, _):
        wrk(base, "append.lua", 16, 2)  # warm-up
        for connections in (64, 16):
            out[f"appends_{connections}"] = wrk(base, "append.lua", connections, seconds)["rps"]
        asyncio.run(seed(base))
        log_env = {"BENCH_HEAD": str(LOG_EVENTS), "BENCH_LIMIT": "1000"}
        wrk(base, "read_log.lua", 16, 2, log_env)
        out["log_pages_1000_per_s"] = wrk(base, "read_log.lua", 16, seconds, log_env)["rps"]
        stream_env = {"BENCH_STREAM": "Read-1", "BENCH_VERSION": str(READ_STREAM_EVENTS)}
        out["stream_pages_per_s"] = wrk(base, "read_stream.lua", 16, seconds, stream_env)["rps"]
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
