"""End to end through a real dagster-daemon: `rag run` crawls a local site and ingests it."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

from rag_core.ids import item_key

pytestmark = pytest.mark.e2e
PAGES = 24


def build_site(root: Path, pages: int) -> None:
    """A small docs site: an index linking every page, pages linking to their neighbours."""
    root.mkdir(parents=True)
    links = "".join(f'<li><a href="/p{i}.html">Page {i}</a></li>' for i in range(pages))
    nav = f"<nav><ul>{links}</ul></nav>"
    (root / "index.html").write_text(
        f"<html><head><title>Home</title></head><body>{nav}<main><h1>Home</h1>"
        "<p>Welcome to the test documentation for the ingestion platform.</p></main></body></html>"
    )
    for i in range(pages):
        body = "".join(
            f"<h2>Section {s}</h2><p>Page {i} section {s} describes topic {i * 7 + s} in detail; "
            "it covers installation, configuration, retries and troubleshooting. "
            * (1 + i % 5)
            + "</p>"
            for s in range(1 + i % 4)
        )
        (root / f"p{i}.html").write_text(
            f"<html><head><title>Page {i}</title></head><body>{nav}<main><h1>Page {i}</h1>"
            f'{body}<a href="/p{(i + 1) % pages}.html">next</a></main>'
            "<footer>Footer text</footer></body></html>"
        )


class SlowHandler(SimpleHTTPRequestHandler):
    """Static files with a little latency, so pages trickle in as they do from a real site."""

    def do_GET(self):  # noqa: N802
        threading.Event().wait(0.05)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    build_site(root, PAGES)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SlowHandler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_rag_run_streams_a_site_into_duckdb_with_few_runs(tmp_path, site):
    data = tmp_path / "data"
    env = {
        **{k: v for k, v in __import__("os").environ.items() if not k.startswith("DAGSTER")},
        "DATA_DIR": str(data),
        "DUCKDB_PATH": str(data / "rag.duckdb"),
        "START_URLS": site,
        "CRAWL_CONCURRENCY": "2",
        "RUN_TIMEOUT_SECONDS": "400",
    }
    summary_file = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "rag_core.cli", "run", "--json-summary", str(summary_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(summary_file.read_text())
    items = PAGES + 1
    assert summary["pages"] == items
    assert summary["crawl_status"] == "SUCCESS"
    # Micro-batching: far fewer ingestion runs than items.
    assert 1 <= summary["ingestion_runs"] <= items // 3
    assert "Progress: Files=" in proc.stdout
    with duckdb.connect(str(data / "rag.duckdb"), read_only=True) as con:
        urls = {r[0] for r in con.execute("SELECT url FROM documents").fetchall()}
        assert {item_key(u) for u in urls} == {
            item_key(site + f"p{i}.html") for i in range(PAGES)
        } | {item_key(site)}
        chunks, embedded, dims, orphans = con.execute(
            "SELECT (SELECT count(*) FROM chunks),"
            " (SELECT count(DISTINCT chunk_id) FROM embeddings),"
            " (SELECT min(len(embedding)) FROM embeddings),"
            " (SELECT count(*) FROM chunks c ANTI JOIN embeddings e USING (chunk_id))"
        ).fetchone()
        assert chunks == embedded == summary["embeddings"] and orphans == 0
        assert dims == 384
        assert con.execute("SELECT count(*) FROM ingest_errors").fetchone()[0] == 0
