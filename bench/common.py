"""Shared pieces of the benchmarks: databases, server processes, wrk, statistics."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
WRK_DIR = BENCH / "wrk"
PG_ADMIN = os.environ.get(
    "EVSTORE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def wait_quiet(max_seconds: float = 600) -> None:
    """Wait (bounded) until no test suite runs on this machine, so it does not share
    the cores with a measured run."""
    deadline = time.monotonic() + max_seconds
    warned = False
    while time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-f", "pytest"], capture_output=True, text=True)
        if not found.stdout.strip():
            return
        if not warned:
            log("a test suite is running; waiting for it to finish")
            warned = True
        time.sleep(3)
    log("warning: a test suite is still running; measuring anyway")


def _pg_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


@contextmanager
def scratch_database() -> Iterator[str]:
    """An empty PostgreSQL database (for the ceilings); dropped afterwards."""
    name = f"evstore_scratch_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type, unused-ignore]
    try:
        yield _pg_url(name)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type, unused-ignore]


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh, migrated database; dropped afterwards."""
    from app.store.migrations import upgrade

    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{folder}/bench.db"
            upgrade(url)
            yield url
        return
    with scratch_database() as url:
        upgrade(url)
        yield url


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def uvicorn(
    target: str,
    env: dict[str, str] | None = None,
    workers: int = 1,
    factory: bool = False,
    stderr: Path | None = None,
) -> Iterator[tuple[str, int]]:
    """A uvicorn process serving `target` with the production settings (uvloop,
    httptools, no access log); yields (base URL, pid). The app must answer GET /health.
    The server's stderr goes to the file `stderr` (appended) when given."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", *(["--factory"] if factory else []), target,
        "--host", "127.0.0.1", "--port", str(port), "--loop", "uvloop", "--http", "httptools",
        "--log-level", "warning", "--no-access-log", "--workers", str(workers),
        "--backlog", "4096",
    ]  # fmt: skip
    with _serving(command, port, env, workers, stderr) as running:
        yield running


@contextmanager
def noop_evstore_protocol(stderr: Path | None = None) -> Iterator[tuple[str, int]]:
    """The no-op app served as `evstore serve` serves evstore (bench/noop_app.py)."""
    port = free_port()
    command = [sys.executable, "-m", "bench.noop_app", str(port)]
    with _serving(command, port, None, 1, stderr) as running:
        yield running


@contextmanager
def _serving(
    command: list[str],
    port: int,
    env: dict[str, str] | None,
    workers: int,
    stderr: Path | None,
) -> Iterator[tuple[str, int]]:
    log_file = stderr.open("ab") if stderr else None
    process = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **(env or {})}, stderr=log_file
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{' '.join(command)} did not start")
            time.sleep(0.1)
        if workers > 1:
            time.sleep(1.5)  # let every worker come up, not only the first to answer
        yield base, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log_file:
            log_file.close()


@contextmanager
def server(
    database_url: str, workers: int = 1, stderr: Path | None = None, **settings: object
) -> Iterator[tuple[str, int]]:
    """An evstore server process started as in production, `evstore serve` (uvloop and
    its httptools protocol, app/server.py), with the log level at warning (no access
    lines, as with the ceilings' `--no-access-log`); yields (base URL, pid)."""
    port = free_port()
    env = {
        "EVSTORE_DATABASE_URL": database_url,
        "EVSTORE_MIGRATE_ON_START": "false",
        "EVSTORE_HOST": "127.0.0.1",
        "EVSTORE_PORT": str(port),
        "EVSTORE_WORKERS": str(workers),
        "EVSTORE_LOG_LEVEL": "warning",
        **{f"EVSTORE_{k.upper()}": str(v) for k, v in settings.items()},
    }
    command = [sys.executable, "-m", "app.cli", "serve"]
    with _serving(command, port, env, workers, stderr) as running:
        yield running


def wrk(
    base: str,
    script: str,
    connections: int,
    seconds: float,
    env: dict[str, str] | None = None,
    threads: int | None = None,
) -> dict[str, float]:
    """One wrk run with a Lua script of bench/wrk/; the script's done() prints a JSON
    line that is returned (requests, errors, latency percentiles in ms, rates).
    `threads`: wrk's threads (default 1 for one connection, else 2)."""
    if threads is None:
        threads = 1 if connections == 1 else 2
    command = [
        "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
        "--timeout", "10s", "-s", str(WRK_DIR / script), base,
    ]  # fmt: skip
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_WRK_DIR": str(WRK_DIR), **(env or {})},
        timeout=seconds + 60,
    )
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, float] = json.loads(line.removeprefix("BENCH_JSON "))
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no result:\n{done.stdout}\n{done.stderr}")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn workers)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except FileNotFoundError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> str:
    cpu = "unknown cpu"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    pg = "PostgreSQL ?"
    try:
        with psycopg.connect(PG_ADMIN) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            fsync = conn.execute("SHOW fsync").fetchone()
            pg = f"PostgreSQL {row[0] if row else '?'} (fsync {fsync[0] if fsync else '?'})"
    except psycopg.Error:
        pass
    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, {pg}; the load generators (wrk, pgbench, the "
        "Python clients) and the server share the same cores"
    )
