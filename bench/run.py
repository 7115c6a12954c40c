"""The benchmark suite of issue 5: evstore against real server processes on PostgreSQL
and SQLite, with the ceilings measured in the same run; writes bench/results.json,
bench/RESULTS.md and the PNG plots (through bench.report).

    python -m bench.run                      # everything (`make bench`)
    python -m bench.run --soak-seconds 120   # a shorter soak
    python -m bench.run --figures ceilings appends --backends postgresql

Every figure is the median of --runs runs of --seconds seconds. Before each measured
run the suite waits (up to 10 minutes) until no pytest process runs on the machine.
wrk, pgbench, the Python clients and the server all share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench import live_latency, report
from bench.common import (
    BENCH,
    PG_ADMIN,
    ROOT,
    database,
    log,
    machine,
    median,
    noop_evstore_protocol,
    rss_bytes,
    scratch_database,
    server,
    uvicorn,
    wait_quiet,
    wrk,
)

FIGURES = ("ceilings", "appends", "workers", "reads", "live", "soak", "profile")
READ_STREAM_EVENTS = 10_000
LOG_EVENTS = 100_000
PAD = "x" * 96


class Suite:
    def __init__(self, args: argparse.Namespace, logs: Path) -> None:
        self.args = args
        self.logs = logs
        self.results: dict[str, Any] = {"figures": {}, "server_logs": {}}
        self.kept_logs: dict[str, Any] = {}  # server logs of a merged earlier run

    # --- bookkeeping -------------------------------------------------------------

    def repeat(self, key: str, measure: Callable[[], dict[str, float]], **meta: Any) -> None:
        """Run `measure` --runs times (each after waiting for a quiet machine), store
        every run and the median of every number, under figures[key]."""
        runs = []
        for i in range(self.args.runs):
            wait_quiet()
            run = measure()
            log(f"{key} run {i + 1}: {json.dumps(_short(run))}")
            runs.append(run)
        medians = {
            k: median([float(r[k]) for r in runs])
            for k in runs[0]
            if all(isinstance(r.get(k), int | float) for r in runs)
        }
        self.results["figures"][key] = {**meta, "runs": runs, "median": medians}
        self.save()

    def stderr(self, label: str) -> Path:
        return self.logs / f"{label}.log"

    def save(self) -> None:
        self.results["server_logs"] = {
            **self.kept_logs,
            **{path.stem: summarize_log(path) for path in sorted(self.logs.glob("*.log"))},
        }
        path = Path(self.args.out) / "results.json"
        path.write_text(json.dumps(self.results, indent=1, sort_keys=True) + "\n")

    # --- figures ------------------------------------------------------------------

    def ceilings(self) -> None:
        seconds = self.args.seconds
        with uvicorn("bench.noop_app:app", stderr=self.stderr("noop")) as (base, _):
            self.repeat(
                "ceiling.noop",
                lambda: wrk(base, "append.lua", 64, seconds),
                what="no-op FastAPI endpoint parsing the single-event body, 64 connections",
                unit="req/s",
                value="rps",
            )
        with noop_evstore_protocol(stderr=self.stderr("noop")) as (base, _):
            self.repeat(
                "ceiling.noop_evstore_protocol",
                lambda: wrk(base, "append.lua", 64, seconds),
                what="the same no-op app served like evstore (evstore's httptools protocol)",
                unit="req/s",
                value="rps",
            )
        with database("postgresql") as url:
            self.repeat(
                "ceiling.pgbench_events_10",
                lambda: pgbench_events(url, 10, 16, seconds),
                what="pgbench, 10-row INSERT transactions into evstore's events table, 16 clients",
                unit="rows/s",
                value="rows_per_s",
            )
        with scratch_database() as url:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "CREATE TABLE scratch (id bigserial PRIMARY KEY, stream text NOT NULL, "
                    "data jsonb NOT NULL)"
                )
            for rows in (10, 1):
                self.repeat(
                    f"ceiling.pgbench_{rows}",
                    lambda rows=rows: pgbench(url, rows, 16, seconds),
                    what=f"pgbench, {rows}-row INSERT transactions, 16 clients",
                    unit="rows/s",
                    value="rows_per_s",
                )

    def appends(self, backend: str, workers: int = 1) -> None:
        label = backend if workers == 1 else f"{backend}-{workers}w"
        seconds = self.args.seconds
        with (
            database(backend) as url,
            server(url, workers=workers, stderr=self.stderr(f"appends-{label}")) as (base, _),
        ):

            def batched(measure: Callable[[], dict[str, float]]) -> dict[str, float]:
                """The run, plus the mean group-commit batch size (1 worker only: with 2,
                /metrics answers from either process)."""
                if workers > 1:
                    return measure()
                before = batch_metrics(base)
                result = measure()
                after = batch_metrics(base)
                batches = after[1] - before[1]
                mean = (after[0] - before[0]) / batches if batches else float("nan")
                return {**result, "mean_batch": mean}

            for connections in (1, 16, 64):
                self.repeat(
                    f"{label}.appends_{connections}",
                    lambda c=connections: batched(
                        lambda: events_rate(wrk(base, "append.lua", c, seconds), 1)
                    ),
                    what=f"single-event appends, {connections} connection(s)",
                    unit="events/s",
                    value="events_per_s",
                )
            self.repeat(
                f"{label}.appends_100x16",
                lambda: batched(
                    lambda: events_rate(
                        wrk(base, "append.lua", 16, seconds, {"BENCH_EVENTS": "100"}), 100
                    )
                ),
                what="100-event appends, 16 connections",
                unit="events/s",
                value="events_per_s",
            )
            self.repeat(
                f"{label}.hot_stream",
                lambda: batched(lambda: asyncio.run(hot_stream(base, seconds))),
                what="one hot stream, 16 If-Match retry loops (httpx)",
                unit="appends/s",
                value="appends_per_s",
            )

    def reads(self, backend: str) -> None:
        seconds = self.args.seconds
        with (
            database(backend) as url,
            server(url, stderr=self.stderr(f"reads-{backend}")) as (base, _),
        ):
            log(f"{backend}: seeding a {LOG_EVENTS}-event log")
            asyncio.run(seed(base))
            stream_env = {"BENCH_STREAM": "Read-1", "BENCH_VERSION": str(READ_STREAM_EVENTS)}
            self.repeat(
                f"{backend}.stream_reads",
                lambda: events_rate(wrk(base, "read_stream.lua", 16, seconds, stream_env), 100),
                what="GET /streams/Read-1?from=<random>&limit=100 (10k-event stream), 16 conns",
                unit="events/s",
                value="events_per_s",
            )
            log_env = {"BENCH_HEAD": str(LOG_EVENTS), "BENCH_LIMIT": "1000"}
            self.repeat(
                f"{backend}.log_reads",
                lambda: events_rate(wrk(base, "read_log.lua", 16, seconds, log_env), 1000),
                what="GET /events?after=<random>&limit=1000 (100k-event log), 16 conns",
                unit="events/s",
                value="events_per_s",
            )
            if backend == "postgresql":
                self.repeat(
                    "ceiling.psycopg_reads",
                    lambda: psycopg_reads(url, seconds),
                    what="raw psycopg, pages of 1000 rows of the events table (data as text)",
                    unit="rows/s",
                    value="rows_per_s",
                )

    def live(self, backend: str) -> None:
        for count, rate in ((200, 200.0), (1000, 20.0)):

            def once(count: int = count, rate: float = rate) -> dict[str, float]:
                bare = backend == "bare"
                with live_latency.target(backend, bare, self.stderr(f"live-{backend}")) as (
                    base,
                    pid,
                ):
                    return live_latency.measure(base, pid, count, rate, self.args.seconds)

            self.repeat(
                f"{backend}.live_{count}",
                once,
                what=f"live delivery, {count} SSE subscribers, {rate:g} appends/s",
                unit="ms",
                value="p99_ms",
            )

    def soak(self, backend: str) -> None:
        seconds, rate = self.args.soak_seconds, self.args.soak_rate
        wait_quiet()
        log(f"{backend}: soak for {seconds} s")
        with (
            database(backend) as url,
            server(url, stderr=self.stderr(f"soak-{backend}")) as (base, pid),
        ):
            result = soak(base, pid, seconds, rate, subscribers=50)
        self.results["figures"][f"{backend}.soak"] = {
            "what": f"RSS during {seconds:g} s of {rate:g} appends/s and 50 SSE subscribers",
            "unit": "MiB",
            "value": "end_mib",
            "runs": [result],
            "median": {k: v for k, v in result.items() if isinstance(v, int | float)},
        }
        log(f"{backend}.soak: {json.dumps(_short(result))}")
        self.save()

    def profile(self) -> None:
        """py-spy on the PostgreSQL server (1 worker) while wrk runs single-event
        appends at 64 connections, then while it reads the global log."""
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            log("py-spy is not installed (pip install py-spy); no profile")
            return
        out = Path(self.args.out)
        profiles: dict[str, Any] = {}
        with (
            database("postgresql") as url,
            server(url, stderr=self.stderr("profile")) as (base, pid),
        ):
            wait_quiet()
            profiles["appends"] = record(spy, pid, out / "profile-appends.svg", base, "append.lua")
            log("profile: seeding the log")
            asyncio.run(seed(base))
            wait_quiet()
            log_env = {"BENCH_HEAD": str(LOG_EVENTS), "BENCH_LIMIT": "1000"}
            profiles["log_reads"] = record(
                spy, pid, out / "profile-log-reads.svg", base, "read_log.lua", log_env
            )
        self.results["profile"] = profiles
        self.save()

    # --- the whole suite ----------------------------------------------------------

    def run(self) -> None:
        args = self.args
        if not args.merge:
            self.results.update(
                date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                machine=machine(),
                command=args.command,
                code=git_state(),
                runs=args.runs,
                seconds=args.seconds,
                soak_seconds=args.soak_seconds,
                soak_rate=args.soak_rate,
            )
        figures = set(args.figures)
        if "ceilings" in figures:
            self.ceilings()
        for backend in args.backends:
            if "appends" in figures:
                self.appends(backend)
            if "reads" in figures:
                self.reads(backend)
            if "live" in figures:
                self.live(backend)
        if "workers" in figures and "postgresql" in args.backends:
            self.appends("postgresql", workers=2)
        if "live" in figures:
            self.live("bare")
        if "profile" in figures:
            self.profile()
        if "soak" in figures:
            for backend in args.backends:
                self.soak(backend)
        self.save()


# --- measurements ---------------------------------------------------------------------


def events_rate(result: dict[str, float], per_request: int) -> dict[str, float]:
    """wrk's numbers, plus events/s; failed requests (non-2xx, socket errors) are kept
    in `errors` and not counted as events."""
    errors = sum(v for k, v in result.items() if k.startswith("errors_"))
    ok = result["requests"] - result["errors_status"]
    return {
        **result,
        "errors": errors,
        "events_per_s": ok * per_request / (result["duration_us"] / 1e6),
    }


def batch_metrics(base: str) -> tuple[float, float]:
    """(requests, batches) committed so far by the group-commit writer, from /metrics."""
    text = httpx.get(base + "/metrics", timeout=10).text
    found = dict(re.findall(r"^evstore_append_batch_requests_(sum|count) ([\d.e+]+)$", text, re.M))
    return float(found.get("sum", 0)), float(found.get("count", 0))


def git_state() -> str:
    """The commit measured, and whether app/ differed from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", "app", "alembic")
    return f"{commit} ({'app/ with uncommitted changes' if dirty else 'clean app/'})"


def pgbench(url: str, rows: int, clients: int, seconds: float) -> dict[str, float]:
    """Multi-row INSERT transactions (one statement each) into a scratch table."""
    data = json.dumps({"n": 1, "thread": 1, "amount": 123456, "note": PAD})
    script = (
        "\\set s random(1, 1000)\n"
        "INSERT INTO scratch (stream, data) SELECT 'Bench-' || :s, "
        f"'{data}'::jsonb FROM generate_series(1, {rows});\n"
    )
    tps = run_pgbench(url, script, clients, seconds)
    return {"tps": tps, "rows_per_s": tps * rows}


def pgbench_events(url: str, rows: int, clients: int, seconds: float) -> dict[str, float]:
    """Multi-row INSERT transactions into a migrated evstore database's events table
    (its six indexes), positions and stream names from sequences: what inserting the
    same rows costs PostgreSQL without evstore's counter, locks and checks."""
    data = json.dumps({"n": 1, "thread": 1, "amount": 123456, "note": PAD})
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE bench_position")
        conn.execute("CREATE SEQUENCE bench_stream")
    script = (
        "INSERT INTO events (position, event_id, stream_id, category, version, type, data, "
        "metadata, recorded_at) SELECT nextval('bench_position'), gen_random_uuid(), s.id, "
        f"'Bench', g, 'BenchEvent', '{data}'::jsonb, '{{}}'::jsonb, now() "
        "FROM (SELECT 'Bench-' || nextval('bench_stream') AS id) s, "
        f"generate_series(1, {rows}) g;\n"
    )
    try:
        tps = run_pgbench(url, script, clients, seconds)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SEQUENCE bench_position, bench_stream")
            conn.execute("TRUNCATE events")
    return {"tps": tps, "rows_per_s": tps * rows}


def run_pgbench(url: str, script: str, clients: int, seconds: float) -> float:
    """Transactions per second of a pgbench script (`-M prepared`, 2 threads)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql") as f:
        f.write(script)
        f.flush()
        done = subprocess.run(
            ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
             "-T", str(round(seconds)), "-f", f.name, url],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    found = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout)
    if not found:
        raise RuntimeError(f"pgbench printed no tps:\n{done.stdout}\n{done.stderr}")
    return float(found.group(1))


def psycopg_reads(url: str, seconds: float) -> dict[str, float]:
    """The log read's query on the raw driver: pages of 1000 rows after random
    positions, data and metadata as text (never parsed), one connection."""
    import random

    query = (
        "SELECT event_id, stream_id, type, version, position, data::text, metadata::text, "
        "recorded_at FROM events WHERE position > %s ORDER BY position LIMIT 1000"
    )
    rows = 0
    with psycopg.connect(url) as conn:
        conn.execute(query, (0,), prepare=True).fetchall()
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            after = random.randint(0, LOG_EVENTS - 1000)
            rows += len(conn.execute(query, (after,), prepare=True).fetchall())
    return {"rows": rows, "rows_per_s": rows / elapsed}


def append_body(n: int, events: int = 1) -> bytes:
    items = [
        {"type": "BenchEvent", "data": {"n": n + i, "thread": 0, "amount": n, "note": PAD}}
        for i in range(events)
    ]
    return json.dumps({"events": items}, separators=(",", ":")).encode()


JSON = {"Content-Type": "application/json"}


async def hot_stream(base: str, seconds: float, tasks: int = 16) -> dict[str, float]:
    """`tasks` loops appending to one stream with If-Match: on 412, take the version
    from the problem's ETag and try again."""
    stream = f"/streams/Hot-{time.monotonic_ns()}"
    limits = httpx.Limits(max_connections=tasks, max_keepalive_connections=tasks)
    counts: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        first = await client.post(stream, content=append_body(0), headers=JSON)
        first.raise_for_status()
        start = time.perf_counter()
        deadline = start + seconds

        async def loop(i: int, version: int) -> None:
            n = 0
            while time.perf_counter() < deadline:
                n += 1
                response = await client.post(
                    stream,
                    content=append_body(i * 1_000_000 + n),
                    headers={**JSON, "If-Match": f'"{version}"'},
                )
                status = response.status_code
                counts[str(status)] += 1
                if status in (201, 412) and "etag" in response.headers:
                    version = int(response.headers["etag"].strip('"'))

        await asyncio.gather(*(loop(i, 1) for i in range(tasks)))
        elapsed = time.perf_counter() - start
    other = sum(v for k, v in counts.items() if k not in ("201", "412"))
    return {
        "appends_per_s": counts["201"] / elapsed,
        "conflicts_per_s": counts["412"] / elapsed,
        "appends": counts["201"],
        "conflicts": counts["412"],
        "errors": other,
    }


async def seed(base: str) -> None:
    """A 10k-event stream (Read-1) in a log of LOG_EVENTS events, 100 per append."""
    limits = httpx.Limits(max_connections=8)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        jobs = [f"/streams/Read-1#{i}" for i in range(READ_STREAM_EVENTS // 100)]
        jobs += [
            f"/streams/Fill-{i % 100}" for i in range((LOG_EVENTS - READ_STREAM_EVENTS) // 100)
        ]
        queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
        for item in enumerate(jobs):
            queue.put_nowait(item)

        async def worker() -> None:
            while not queue.empty():
                n, path = queue.get_nowait()
                response = await client.post(
                    path.split("#")[0], content=append_body(n * 100, 100), headers=JSON
                )
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(8)))
        head = await client.get("/events", params={"after": LOG_EVENTS - 1000, "limit": 1000})
        if len(head.json()["events"]) != 1000:
            raise RuntimeError("the seeded log is not as long as expected")


def soak(base: str, pid: int, seconds: float, rate: float, subscribers: int) -> dict[str, Any]:
    """Paced appends and live subscribers for `seconds`, sampling the server's RSS
    every 10 s."""
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        start = time.perf_counter()
        while not stop.is_set():
            samples.append((time.perf_counter() - start, rss_bytes(pid) / 2**20))
            stop.wait(10)

    with live_latency.subscribers(base, subscribers) as pipe:
        sampler = threading.Thread(target=sample)
        sampler.start()
        acks, statuses = asyncio.run(live_latency.paced_appends(base, rate, seconds))
        stop.set()
        sampler.join()
        samples.append((samples[-1][0] + 0.0, rss_bytes(pid) / 2**20))
        pipe.send(("done", acks))
        if not pipe.poll(300):
            raise RuntimeError("the subscribers did not report")
        delivery: dict[str, float] = pipe.recv()
    values = [v for _, v in samples]
    third = max(1, len(values) // 3)
    warm = max(values[:third])
    end = values[-1]
    # Growth after the first third (allocator and caches warming up): a slope over
    # the rest in MiB per minute, and "grew" when the end is 5 % (and 5 MiB) above.
    tail = samples[third:]
    slope = _slope(tail) * 60 if len(tail) >= 2 else 0.0
    grew = end - warm > max(5.0, 0.05 * warm)
    return {
        "start_mib": values[0],
        "end_mib": end,
        "max_mib": max(values),
        "after_warmup_mib": warm,
        "slope_mib_per_min": slope,
        "grew": grew,
        "samples": samples,
        "appends": len(acks),
        "non_201": sum(v for k, v in statuses.items() if k != "201"),
        "statuses": statuses,
        "deliveries": delivery["deliveries"],
        "missing": delivery["missing"],
        "p99_ms": delivery["p99_ms"],
    }


def _slope(points: list[tuple[float, float]]) -> float:
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


# --- profile and logs -----------------------------------------------------------------


def record(
    spy: str, pid: int, svg: Path, base: str, script: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """10 s of py-spy (a flame graph, then collapsed stacks to summarize) on `pid`
    while wrk runs `script` at 64 connections."""
    load = threading.Thread(target=wrk, args=(base, script, 64, 25, env))
    load.start()
    time.sleep(2)
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "stacks.txt"
        for fmt, path in (("flamegraph", svg), ("raw", raw)):
            subprocess.run(
                [spy, "record", "--pid", str(pid), "--duration", "10", "--rate", "200",
                 "--format", fmt, "-o", str(path)],
                check=True, capture_output=True,
            )  # fmt: skip
        summary = profile_summary(raw.read_text())
    load.join()
    summary["svg"] = svg.name
    return summary


PACKAGES = (
    ("sqlalchemy", "SQLAlchemy"),
    ("psycopg", "psycopg"),
    ("aiosqlite", "aiosqlite"),
    ("(app/", "evstore (app/)"),
    ("fastapi", "FastAPI"),
    ("starlette", "Starlette"),
    ("pydantic", "pydantic"),
    ("uvicorn", "uvicorn"),
    ("prometheus_client", "prometheus_client"),
    ("asyncio", "asyncio"),
    ("json", "json"),
)


IDLE = ("Condition.wait (threading.py", "_worker (concurrent/futures/thread.py")


def _frame_package(frame: str) -> str:
    if frame.startswith("Runner.run (asyncio/runners.py"):
        return "event loop itself (uvloop C code: sockets, httptools, callbacks)"
    for needle, name in PACKAGES:
        if needle in frame:
            return name
    return "other (interpreter, C code, stdlib)"


def profile_summary(raw: str) -> dict[str, Any]:
    """Self time by function and by package, and inclusive time of a few frames,
    from py-spy's collapsed stacks ("frame;frame;frame count")."""
    self_time: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = other_threads = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        if "_bootstrap (threading.py" in frames[0] and frames[-1].startswith(IDLE):
            # idle pool threads, which py-spy counts as active (Condition.wait)
            other_threads += n
            continue
        total += n
        leaf = frames[-1]
        self_time[leaf] += n
        # the innermost frame that is not the interpreter's own says whose time it is
        packages[_frame_package(leaf)] += n
        for frame in set(frames):
            inclusive[frame] += n
    share = lambda n: round(100 * n / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "other_thread_samples": other_threads,
        "self": [(f, share(n)) for f, n in self_time.most_common(20)],
        "packages": [(p, share(n)) for p, n in packages.most_common()],
        "inclusive": [
            (f, share(n))
            for f, n in inclusive.most_common(400)
            if any(k in f for k in ("(app/", "sqlalchemy", "psycopg", "json", "run_in_threadpool"))
        ][:25],
    }


def summarize_log(path: Path) -> dict[str, Any]:
    """What a server wrote to stderr: ERROR lines and exceptions, counted."""
    errors: Counter[str] = Counter()
    exceptions: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("ERROR:", "WARNING:", "CRITICAL:")):
            errors[line[:120]] += 1
        elif re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Disconnect|Timeout|Exit)\b", line):
            exceptions[line[:160]] += 1
    return {"lines": dict(errors.most_common(10)), "exceptions": dict(exceptions.most_common(10))}


def _short(run: dict[str, Any]) -> dict[str, Any]:
    return {
        k: round(v, 2) if isinstance(v, float) else v
        for k, v in run.items()
        if k != "samples" and not k.startswith("errors_")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--figures", nargs="+", choices=FIGURES, default=list(FIGURES))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=6, help="length of one run")
    parser.add_argument("--soak-seconds", type=float, default=600)
    parser.add_argument("--soak-rate", type=float, default=100, help="appends/s in the soak")
    parser.add_argument("--out", default=str(BENCH), help="where results and plots go")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the figures of the existing results.json and replace only those measured",
    )
    args = parser.parse_args()
    args.command = "python -m bench.run " + " ".join(sys.argv[1:])
    Path(args.out).mkdir(parents=True, exist_ok=True)
    log(f"PostgreSQL admin URL: {PG_ADMIN}")
    with tempfile.TemporaryDirectory(prefix="evstore-bench-logs-") as logs:
        suite = Suite(args, Path(logs))
        existing = Path(args.out) / "results.json"
        if args.merge and existing.exists():
            suite.results = json.loads(existing.read_text())
            suite.results.setdefault("merged", []).append(f"{args.command} (code {git_state()})")
            suite.kept_logs = suite.results.get("server_logs", {})
        suite.run()
    report.write(Path(args.out))
    log(f"wrote {Path(args.out) / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
