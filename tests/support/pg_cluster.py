"""A private, throwaway PostgreSQL cluster for tests that stop or restart the database.

Never the machine's shared server: `initdb` into a temporary folder owned by the
`postgres` OS user, on a free port, with its unix socket in that folder and fsync on.
Commands run as `postgres` (via runuser) when the tests run as root. Use
`PgCluster.create()` as a context manager; it is removed on the way out.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.tcp_proxy import free_port

BIN_DIRS = [Path("/usr/lib/postgresql/15/bin")]
OS_USER = "postgres"


def pg_bin(name: str) -> str:
    for folder in BIN_DIRS:
        if (folder / name).is_file():
            return str(folder / name)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found in {BIN_DIRS} or on PATH")
    return found


@dataclass
class PgCluster:
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str, timeout: float = 60) -> None:
        prefix = ["runuser", "-u", OS_USER, "--"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [*prefix, *command], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )

    def _ctl(self, *args: str) -> None:
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on"
            " -c max_connections=200"
        )
        self._ctl("-l", str(self.log), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster: `fast` (clean) or `immediate` (crash; recovery on start)."""
        self._ctl("-m", mode, "stop")

    def create_database(self, name: str) -> str:
        self._run(pg_bin("createdb"), "-h", str(self.root), "-p", str(self.port), name)
        return self.url(name)

    @classmethod
    @contextlib.contextmanager
    def create(cls) -> Iterator[PgCluster]:
        root = Path(tempfile.mkdtemp(prefix="evstore-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam(OS_USER)
            os.chown(root, user.pw_uid, user.pw_gid)
        cluster = cls(root, free_port())
        try:
            cluster._run(
                pg_bin("initdb"),
                "-D",
                str(cluster.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            )
            cluster.start()
            yield cluster
        finally:
            with contextlib.suppress(Exception):
                cluster.stop("immediate")
            shutil.rmtree(root, ignore_errors=True)
