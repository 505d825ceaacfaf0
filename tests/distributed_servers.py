"""Real PostgreSQL and Redis servers for the distributed profile's tests.

Both come from Debian packages (`make test-servers` installs them) and are started by the test
on free ports in a temporary folder. A missing binary FAILS the test with the command that
installs it: the distributed profile is part of `make test`, never silently skipped.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_HINT = "install it with `make test-servers` (apt-get install postgresql redis-server)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _binary(name: str, extra_dirs: tuple[str, ...] = ()) -> str:
    found = shutil.which(name)
    for folder in extra_dirs:
        if found:
            break
        candidate = Path(folder) / name
        found = str(candidate) if candidate.is_file() else None
    if not found:
        pytest.fail(f"`{name}` is not installed: {INSTALL_HINT}", pytrace=False)
    return found


def _pg_bin(name: str) -> str:
    return _binary(name, tuple(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)))


def _wait_port(port: int, proc: subprocess.Popen | None, what: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    pytest.fail(f"{what} did not start on port {port}:\n{text}", pytrace=False)


@dataclass
class Postgres:
    port: int
    user: str = "rag"

    def dsn(self, dbname: str) -> str:
        """libpq key/value string (DuckLake's catalog, psycopg2)."""
        return f"dbname={dbname} host=127.0.0.1 port={self.port} user={self.user}"

    def url(self, dbname: str) -> str:
        """SQLAlchemy-style URL (dagster-postgres)."""
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> None:
        import psycopg2

        con = psycopg2.connect(self.dsn("postgres"))
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        con.close()


@contextlib.contextmanager
def postgres_server(root: Path) -> Iterator[Postgres]:
    """A throwaway cluster: initdb + pg_ctl on a free port, trust auth on 127.0.0.1 only."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    root.mkdir(parents=True, exist_ok=True)
    # PostgreSQL refuses to run as root: as root (CI containers), the cluster belongs to nobody,
    # in a folder of its own (pytest's tmp folders are private to root).
    user = None
    if os.geteuid() == 0:
        user = "nobody"
        root = Path(tempfile.mkdtemp(prefix="rag-pg-"))
        os.chown(root, pwd.getpwnam(user).pw_uid, -1)
    data, log = root / "pgdata", root / "postgres.log"

    def run(*args: str) -> None:
        done = subprocess.run(list(args), user=user, capture_output=True, text=True)
        if done.returncode:
            pytest.fail(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}", pytrace=False)

    run(initdb, "-D", str(data), "-U", "rag", "--auth=trust", "-E", "UTF8")
    port = free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=200"
    run(pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
    try:
        _wait_port(port, None, "PostgreSQL", log)
        yield Postgres(port)
    finally:
        subprocess.run(
            [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
            user=user, capture_output=True, check=False,
        )  # fmt: skip
        if user is not None:
            shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def redis_server(root: Path) -> Iterator[str]:
    """redis-server on a free port, no persistence; yields its redis:// URL."""
    binary = _binary("redis-server")
    root.mkdir(parents=True, exist_ok=True)
    port, log = free_port(), root / "redis.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(root)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_port(port, proc, "redis-server", log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
