"""Server CPU time per request while wrk drives single-event appends at 64 connections
and 100-event appends at 16, four runs of 6 s each: the utime + stime of the evstore
server process (from /proc), which a shared machine disturbs far less than throughput.
Run it from inside each tree to compare, A/B interleaved (A, B, B, A):

    .venv/bin/python -m bench.cpu_per_request OUT.json
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import database, log, server, wait_quiet, wrk

TICK = os.sysconf("SC_CLK_TCK")
FIGURES = (
    ("appends_64", "append.lua", 64, None, 1),
    ("appends_100x16", "append.lua", 16, {"BENCH_EVENTS": "100"}, 100),
)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def measure(
    base: str, pid: int, script: str, conns: int, env: dict[str, str] | None, per: int
) -> dict[str, Any]:
    wait_quiet()
    c0, t0 = cpu_seconds(pid), time.monotonic()
    r = wrk(base, script, conns, 6, env)
    c1, t1 = cpu_seconds(pid), time.monotonic()
    ok = r["requests"] - r["errors_status"]
    return {
        "requests": ok,
        "events_per_s": ok * per / (r["duration_us"] / 1e6),
        "server_cpu_share": (c1 - c0) / (t1 - t0),
        "cpu_us_per_request": (c1 - c0) / ok * 1e6 if ok else None,
    }


def main() -> None:
    out: dict[str, Any] = {"tree": os.getcwd(), "runs": []}
    with database("postgresql") as url, server(url) as (base, pid):
        for rep in range(4):
            for name, script, conns, env, per in FIGURES:
                run = {**measure(base, pid, script, conns, env, per), "figure": name, "rep": rep}
                log(json.dumps(run))
                out["runs"].append(run)
    Path(sys.argv[1]).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
