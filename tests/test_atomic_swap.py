"""A changed page never drops out of search and is never seen half old, half new."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from tests.helpers import materialize_range, paragraphs, write_page

REPO_ROOT = Path(__file__).resolve().parents[1]
PHRASE = "zephyr lattice"

# Another process, as `rag search` would be: open read-only (waiting out the writer), look
# for the page's phrase the way search does (vectors joined to chunks and documents), and
# for a mix (chunks of one version beside the document of another).
READER = """
import json, sys, time
from pathlib import Path
from rag_core.stores import duckdb_store as store
db, key, stop, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), open(sys.argv[4], "w")
while not stop.exists():
    with store.connect(db, read_only=True, timeout_s=60) as con:
        found = con.execute(
            "SELECT count(*) FROM embeddings e JOIN chunks c USING (chunk_id) "
            "JOIN documents d ON d.item_id = c.item_id WHERE c.item_id = ? AND c.text LIKE ?",
            [key, "%zephyr lattice%"],
        ).fetchone()[0]
        mixed = con.execute(
            "SELECT count(*) FROM chunks c JOIN documents d USING (item_id) "
            "WHERE c.item_id = ? AND c.content_hash <> d.content_hash",
            [key],
        ).fetchone()[0]
    out.write(json.dumps({"found": found, "mixed": mixed}) + "\\n")
    out.flush()
    time.sleep(0.005)
"""


def test_search_finds_a_changing_page_at_every_moment(settings, tmp_path):
    raw = settings.raw_dir
    url = "http://docs.test/guide"
    body = f"<h2>Overview</h2><p>The {PHRASE} keeps state.</p>" + paragraphs("old guide", 12)
    key = write_page(raw, url, "Guide", body)
    other = [write_page(raw, f"http://docs.test/p{i}", f"P{i}", paragraphs(f"p{i}", 6))
             for i in range(3)]  # fmt: skip
    with dg.instance_for_test() as instance:
        materialize_range(instance, settings, [key, *other])
        stop, samples = tmp_path / "stop", tmp_path / "samples.jsonl"
        reader = subprocess.Popen(
            [sys.executable, "-c", READER, str(settings.duckdb_path), key, str(stop), str(samples)],
            cwd=REPO_ROOT,
        )
        try:
            time.sleep(1.0)
            for version in range(3):  # three changes in a row, each re-ingested
                new_body = (
                    f"<h2>Overview v{version}</h2><p>The {PHRASE} keeps state, version "
                    f"{version}.</p>" + paragraphs(f"new guide {version}", 10 + version)
                )
                write_page(raw, url, "Guide", new_body)
                materialize_range(instance, settings, [key])
            time.sleep(0.5)
        finally:
            stop.write_text("")
            reader.wait(timeout=60)
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(rows) >= 20, rows
    assert all(r["found"] > 0 for r in rows), [r for r in rows if not r["found"]][:5]
    assert all(r["mixed"] == 0 for r in rows)
