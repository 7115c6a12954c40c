"""Idle live subscribers at scale: single-event appends at 16 connections with and
without thousands of SSE subscribers whose filter never matches, in one run against
one server; how many subscribers were dropped; the server's memory per subscriber.

    python -m bench.live_scale --backend postgresql --subscribers 5000 --seconds 6

The order is A B A (appends alone, with the subscribers, alone again after they left),
and the figure is B over the mean of the two A runs. The subscribers are raw asyncio
protocols in a child process on the same cores; being idle, they cost it nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import time
from multiprocessing.connection import Connection
from typing import Any

import httpx

from bench.common import database, median, rss_bytes, server, wrk
from bench.live_latency import connect_subscribers, run_child

NEVER = "/events/live?category=Nowhere"  # the appends go to Bench-<n>


def idle_process(pipe: Connection, host: str, port: int, count: int) -> None:
    run_child(_idle(pipe, host, port, count))


async def _idle(pipe: Connection, host: str, port: int, count: int) -> None:
    connected = await connect_subscribers(host, port, count, NEVER, caught_up_seconds=180)
    pipe.send("ready")
    await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
    lost = sum(peer.lost for _, peer in connected)
    for transport, _ in connected:
        transport.close()
    received = sum(len(peer.arrivals) for _, peer in connected)
    pipe.send({"lost": lost, "events_received": received})


def live_gauge(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=30).text
    found = re.search(r"^evstore_live_subscribers (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else float("nan")


def measure(backend: str, count: int, seconds: float) -> dict[str, Any]:
    with database(backend) as url, server(url) as (base, pid):
        host, port = base.removeprefix("http://").split(":")
        wrk(base, "append.lua", 16, 2)  # warm-up
        alone = [wrk(base, "append.lua", 16, seconds)["rps"]]
        before = rss_bytes(pid)
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=idle_process, args=(child, host, int(port), count))
        process.start()
        try:
            if not parent.poll(240) or parent.recv() != "ready":
                raise RuntimeError("the subscribers did not catch up")
            time.sleep(1.0)
            idle = rss_bytes(pid)
            crowded = wrk(base, "append.lua", 16, seconds)
            gauge = live_gauge(base)
            parent.send("done")
            if not parent.poll(120):
                raise RuntimeError("the subscribers did not report")
            report: dict[str, Any] = parent.recv()
        finally:
            process.join(60)
            if process.is_alive():
                process.kill()
        alone.append(wrk(base, "append.lua", 16, seconds)["rps"])
    baseline = sum(alone) / len(alone)
    return {
        "subscribers": count,
        "appends_alone_per_s": baseline,
        "appends_alone_runs": alone,
        "appends_with_subscribers_per_s": crowded["rps"],
        "ratio": crowded["rps"] / baseline,
        "p99_ms_with_subscribers": crowded.get("p99_ms", float("nan")),
        "errors_with_subscribers": sum(v for k, v in crowded.items() if k.startswith("errors")),
        "live_subscribers_gauge": gauge,
        "dropped": report["lost"],
        "events_received": report["events_received"],
        "kib_per_idle_subscriber": (idle - before) / count / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--subscribers", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    runs = [measure(args.backend, args.subscribers, args.seconds) for _ in range(args.runs)]
    for run in runs:
        print(json.dumps({"backend": args.backend, **run}))
    if len(runs) > 1:
        print(json.dumps({"median_ratio": median([r["ratio"] for r in runs])}))


if __name__ == "__main__":
    main()
