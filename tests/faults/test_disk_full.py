"""SQLite on a tiny tmpfs, appended to until the disk is full: the API answers 507 or 503
problems (never 500), the file is never corrupt (`PRAGMA integrity_check` is ok), and
appends work again once space is freed; then the history checker. Needs root (mount);
skips with a message where mounting is not permitted."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from app.settings import Settings
from tests.support.history import History, Operation, Target, attempt, check, read_state

TMPFS_SIZE = "2m"
FILLER_BYTES = 512 * 1024
BLOB = "x" * 8000  # one event's data: a few of these per page


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
async def client_on_tiny_disk(
    tiny_disk: Path, sqlite_template: Path
) -> AsyncIterator[tuple[Path, httpx.AsyncClient]]:
    database = tiny_disk / "evstore.db"
    shutil.copyfile(sqlite_template, database)
    settings = Settings(
        database_url=f"sqlite:///{database}", migrate_on_start=False, statement_timeout_seconds=5
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://evstore") as client:
            yield database, client


def integrity(database: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]


def new_operation(history: History, n: int) -> Operation:
    events = [{"id": str(uuid.uuid4()), "type": "Filled", "data": {"n": n, "blob": BLOB}}]
    op = Operation(f"Disk-{n % 3}", events, {})
    history.operations.append(op)
    return op


async def test_disk_full_is_507_or_503_and_recovers(
    client_on_tiny_disk: tuple[Path, httpx.AsyncClient],
) -> None:
    database, client = client_on_tiny_disk
    target = Target("")
    filler = database.parent / "filler"
    filler.write_bytes(b"\0" * FILLER_BYTES)  # space to free once the disk is full
    history = History()
    full = []
    for n in range(2000):  # 2 MiB / 8 kB: the disk is full long before this
        result = await attempt(client, target, new_operation(history, n))
        if result.outcome != "ok":
            full.append(result)
            if len(full) == 5:
                break
    assert full, "the disk never filled up"
    assert {a.status for a in full} <= {503, 507}, [(a.status, a.error) for a in full]
    assert integrity(database) == ["ok"]

    filler.unlink()
    for op in history.operations:  # retry the unknown outcomes, then write something new
        if op.outcome != "ok":
            assert (await attempt(client, target, op)).outcome == "ok", op.attempts[-1]
    assert (await attempt(client, target, new_operation(history, -1))).status == 201
    state = await read_state(client)
    assert check(history, state) == [], history.summary()
    assert integrity(database) == ["ok"]
