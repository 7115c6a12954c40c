"""The `evstore` command as an operator meets it: real processes of the virtual
environment's `evstore`, run from a temporary directory (not the source tree), with
only the EVSTORE_* variables each test sets."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from app.api.log_format import JsonFormatter, TextFormatter, log_config
from app.store.engine import sync_url
from app.store.migrations import alembic_config, check_schema
from tests.conftest import pg_url

EVSTORE = str(Path(sys.executable).with_name("evstore"))
SECRET = "s3cret-pw"
RUN_SECONDS = 60.0
READY_SECONDS = 30.0


def environment(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVSTORE_")}
    return env | {f"EVSTORE_{name.upper()}": value for name, value in settings.items()}


def evstore(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run `evstore args...` to its end (bounded: a bug that starts serving fails)."""
    return subprocess.run(
        [EVSTORE, *args],
        cwd=cwd,
        env=environment(**settings),
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tables(database_url: str) -> set[str]:
    engine = sa.create_engine(sync_url(database_url))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


# --- help, version, options --------------------------------------------------------


def test_version_comes_from_the_package_metadata(tmp_path: Path) -> None:
    result = evstore(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"evstore {version('evstore')}"


def test_help_names_each_option_with_its_variable_and_default(tmp_path: Path) -> None:
    serve = " ".join(evstore(tmp_path, "serve", "--help").stdout.split())
    for option, variable, default in [
        ("--host", "EVSTORE_HOST", "127.0.0.1"),
        ("--port", "EVSTORE_PORT", "8000"),
        ("--workers", "EVSTORE_WORKERS", "1"),
        ("--log-level", "EVSTORE_LOG_LEVEL", "info"),
        ("--log-format", "EVSTORE_LOG_FORMAT", "json"),
    ]:
        assert option in serve
        assert f"({variable}, default {default})" in serve
    for args in (["--help"], ["serve", "--help"], ["migrate", "--help"]):
        text = " ".join(evstore(tmp_path, *args).stdout.split())
        assert "EVSTORE_DATABASE_URL" in text
        assert "default sqlite:///./evstore.db" in text


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--port", "0"], "--port=0"),
        (["--port", "65536"], "--port=65536"),
        (["--workers", "0"], "--workers=0"),
        (["--workers", "-1"], "--workers=-1"),
        (["--log-format", "xml"], "--log-format='xml'"),
        (["--log-level", "loud"], "--log-level='loud'"),
    ],
)
def test_a_wrong_option_is_an_error_not_the_default(
    tmp_path: Path, args: list[str], named: str
) -> None:
    database = tmp_path / "evstore.db"
    result = evstore(tmp_path, "serve", *args, database_url=f"sqlite:///{database}")
    assert result.returncode == 2
    assert f"evstore serve: error: {named}: " in result.stderr.splitlines()[-1]
    assert not database.exists()  # refused before anything was touched


def test_a_wrong_option_is_named_as_the_option_not_its_variable(tmp_path: Path) -> None:
    result = evstore(tmp_path, "serve", "--port", "0", port="8123")
    assert result.returncode == 2
    assert "--port=0" in result.stderr
    assert "EVSTORE_PORT" not in result.stderr.splitlines()[-1]


# --- one line and status 1 for what the operator must fix --------------------------


@pytest.mark.parametrize("command", ["serve", "migrate", "openapi"])
@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"port": "abc"}, "evstore: EVSTORE_PORT='abc': Input should be a valid integer"),
        ({"workers": "0"}, "evstore: EVSTORE_WORKERS='0': Input should be greater than"),
        ({"log_format": "xml"}, "evstore: EVSTORE_LOG_FORMAT='xml': Input should be 'json'"),
        ({"migrate_on_start": "maybe"}, "evstore: EVSTORE_MIGRATE_ON_START='maybe': "),
        (
            {"database_url": f"mysql://root:{SECRET}@db/evstore"},
            "evstore: EVSTORE_DATABASE_URL: unsupported database 'mysql': use sqlite:///",
        ),
        (
            {"database_url": f"postgresql://root:{SECRET}@db:port/evstore"},
            "evstore: EVSTORE_DATABASE_URL: not a database URL: use sqlite:///",
        ),
    ],
)
def test_a_wrong_setting_is_one_line_and_status_1(
    tmp_path: Path, command: str, settings: dict[str, str], expected: str
) -> None:
    result = evstore(tmp_path, command, **settings)
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith(expected), line
    assert SECRET not in result.stderr


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_an_unreachable_database_is_one_line_without_the_password(
    tmp_path: Path, command: str
) -> None:
    url = f"postgresql://evstore:{SECRET}@127.0.0.1:{free_port()}/evstore"
    result = evstore(tmp_path, command, database_url=url)
    assert result.returncode == 1
    line = one_line(result)
    assert line.startswith("evstore: cannot use the database postgresql://evstore:***@127.0.0.1")
    assert "Connection refused" in line
    assert SECRET not in result.stderr


@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_a_missing_postgres_database_is_named(
    tmp_path: Path, command: str, request: pytest.FixtureRequest
) -> None:
    request.getfixturevalue("pg_template")  # skips when PostgreSQL is unreachable
    name = "evstore_missing_database"
    url = make_url(pg_url(name)).set(password=SECRET).render_as_string(hide_password=False)
    result = evstore(tmp_path, command, database_url=url)
    assert result.returncode == 1
    line = one_line(result)
    assert f'database "{name}" does not exist' in line
    assert SECRET not in result.stderr


def test_no_migration_on_start_leaves_no_file_behind(tmp_path: Path) -> None:
    database = tmp_path / "data" / "evstore.db"
    url = f"sqlite:///{database}"
    result = evstore(tmp_path, "serve", database_url=url, migrate_on_start="false")
    assert result.returncode == 1
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert one_line(result) == (
        f"evstore: the database {url} does not exist; database schema is at revision none, "
        f"this version needs {head}: run `evstore migrate` (or start with "
        "EVSTORE_MIGRATE_ON_START=true)"
    )
    assert list(tmp_path.iterdir()) == []


def test_migrate_works_outside_the_source_tree(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/evstore.db"
    result = evstore(tmp_path, "migrate", database_url=url)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"migrated {url}\n"
    check_schema(url)


# --- concurrent starts --------------------------------------------------------------

# Imports everything first, then waits on stdin: the test releases all at once, so the
# processes reach the migration within a millisecond of each other.
BARRIER = """
import sys
import alembic.command, app.store.migrations
from app.cli import main
print("ready", flush=True)
sys.stdin.readline()
raise SystemExit(main(["migrate"]))
"""


def test_concurrent_migrations_of_a_new_sqlite_file_all_succeed(tmp_path: Path) -> None:
    for round_ in range(3):
        url = f"sqlite:///{tmp_path}/evstore-{round_}.db"
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", BARRIER],
                cwd=tmp_path,
                env=environment(database_url=url),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("\n")
            process.stdin.flush()
        results = [(p.wait(timeout=RUN_SECONDS), p.communicate()[1]) for p in processes]
        assert results == [(0, f"migrated {url}\n")] * len(processes)
        check_schema(url)
        assert {"streams", "events", "log_head", "alembic_version"} <= tables(url)


# --- serving ------------------------------------------------------------------------


@contextlib.contextmanager
def serving(cwd: Path, *args: str, **settings: str) -> Iterator[tuple[str, Path]]:
    """`evstore serve` on a free port, ready (GET /health/ready is 200) when entered;
    SIGTERM on the way out. Yields its URL and the file its stderr goes to."""
    port = free_port()
    log = cwd / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [EVSTORE, "serve", "--port", str(port), *args],
            cwd=cwd,
            env=environment(**settings),
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if process.poll() is not None:
                raise AssertionError(f"exited with {process.returncode}: {log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"not ready in time: {log.read_text()}"
            time.sleep(0.05)  # poll interval while the process starts listening
        yield url, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_two_servers_start_at_once_on_a_new_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/evstore.db"
    with (
        serving(tmp_path, database_url=url) as (first, _),
        serving(tmp_path, database_url=url) as (second, _),
    ):
        body = {"events": [{"type": "Started", "data": {"n": 1}}]}
        assert httpx.post(first + "/streams/cli-1", json=body).status_code == 201
        read = httpx.get(second + "/streams/cli-1").json()
        assert [e["data"] for e in read["events"]] == [{"n": 1}]
    check_schema(url)


@pytest.mark.slow
def test_text_logs_carry_the_request_id_and_never_event_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/evstore.db"
    rid = "cli-test-request-1"
    with serving(tmp_path, "--log-format", "text", database_url=url, log_level="info") as (
        base,
        log,
    ):
        body = {"events": [{"type": "Noted", "data": {"note": "private-payload"}}]}
        headers = {"X-Request-ID": rid}
        assert httpx.post(base + "/streams/cli-2", json=body, headers=headers).status_code == 201
        assert httpx.get(base + "/streams/cli-2", headers=headers).status_code == 200
    output = log.read_text()
    lines = output.splitlines()
    assert lines, output
    assert not [line for line in lines if line.startswith("{")], output
    access = [line for line in lines if "evstore.access" in line and f"[{rid}]" in line]
    assert len(access) == 2, output
    assert "POST /streams/{stream_id} 201 duration_ms=" in access[0]
    assert "private-payload" not in output


def test_text_format_is_one_readable_line_without_repeating_the_message() -> None:
    record = logging.LogRecord("evstore.access", logging.INFO, __file__, 1, "%s %s %s", None, None)
    record.args = ("GET", "/log", 200)
    record.request_id = "rid-1"
    record.fields = {"method": "GET", "route": "/log", "status": 200, "duration_ms": 1.5}
    line = TextFormatter().format(record)
    assert line.endswith(" info    evstore.access [rid-1] GET /log 200 duration_ms=1.5")
    assert json.loads(JsonFormatter().format(record))["duration_ms"] == 1.5


def test_json_stays_the_default_log_format() -> None:
    assert log_config("info")["formatters"]["evstore"]["()"] is JsonFormatter
    assert log_config("info", "text")["formatters"]["evstore"]["()"] is TextFormatter
