"""A burst of live subscribers connecting at once (issue 11: "10,000 subscribers
connecting at once"), against one `evstore serve` process with its default settings
and nothing else running: how many got 200, 503 or a connection error, how long until
every one had its answer, and the server's memory and open descriptors.

    python -m bench.connect_burst --backend postgresql --subscribers 10000 --runs 3

The subscribers are raw asyncio protocols in this process (bench/hostile_soak.py's
`burst`): all connections are opened at once, with no pacing, so the listen backlog
(2,048) and the server's accept loop take the whole burst. Each run waits until the
previous run's subscribers have left the server (its `evstore_live_subscribers`
gauge back to 0). This process's descriptor limit is raised to its hard limit; the
server raises its own and caps connections below it (app/server.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import database, log, rss_bytes, server, wait_quiet
from bench.hostile_soak import burst, server_log_summary

MiB = 1024 * 1024


def live_gauge(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=30).text
    found = re.search(r"^evstore_live_subscribers (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else float("nan")


def wait_gauge(base: str, value: float, seconds: float = 60) -> None:
    """Poll the server's subscriber gauge until it reads `value`."""
    deadline = time.monotonic() + seconds
    while live_gauge(base) != value:
        if time.monotonic() > deadline:
            raise RuntimeError(f"evstore_live_subscribers did not come to {value}")
        time.sleep(0.2)  # poll interval


def raise_descriptor_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft < needed:
        raise SystemExit(f"a descriptor limit of {soft} cannot hold {needed} connections")
    return soft


def measure(backend: str, count: int, runs: int, server_log: Path) -> dict[str, Any]:
    limit = raise_descriptor_limit(count + 256)
    wait_quiet()
    server_log.unlink(missing_ok=True)
    results: list[dict[str, Any]] = []
    with database(backend) as url, server(url, stderr=server_log) as (base, pid):
        host, port = base.removeprefix("http://").split(":")
        httpx.post(f"{base}/streams/Burst-1", json={"events": [{"type": "T", "data": {}}]})
        for run in range(runs):
            before = rss_bytes(pid)
            log(f"run {run + 1}: {count} subscribers at once")

            async def one() -> tuple[dict[str, Any], float, int]:
                held = await burst(host, int(port), count, "/events/live")
                try:
                    gauge = await asyncio.to_thread(live_gauge, base)
                    peak = rss_bytes(pid)
                    fds = len(os.listdir(f"/proc/{pid}/fd"))
                finally:
                    held.close()
                    await asyncio.sleep(0)  # the transports' close callbacks run
                figures = held.figures()
                figures["live_subscribers_gauge"] = gauge
                return figures, peak, fds

            figures, held_rss, fds = asyncio.run(one())
            wait_gauge(base, 0)
            results.append(
                {
                    **figures,
                    "rss_before_mib": round(before / MiB, 1),
                    "rss_held_mib": round(held_rss / MiB, 1),
                    "rss_after_mib": round(rss_bytes(pid) / MiB, 1),
                    "server_fds_held": fds,
                }
            )
            log(json.dumps(results[-1]))
    return {
        "backend": backend,
        "subscribers": count,
        "client_descriptor_limit": limit,
        "runs": results,
        "server_log": server_log_summary(server_log.read_text(errors="replace")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--server-log", type=Path, default=None)
    args = parser.parse_args()
    folder = Path(tempfile.gettempdir())
    server_log = args.server_log or folder / f"evstore-connect-burst-{args.backend}.log"
    print(json.dumps(measure(args.backend, args.subscribers, args.runs, server_log)))


if __name__ == "__main__":
    main()
