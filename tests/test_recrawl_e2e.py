"""Re-crawl through the real daemon: one page edited, one deleted, one added, the rest untouched."""

from __future__ import annotations

import pytest

from rag_app.instance import open_instance
from rag_core.constants import ITEMS_PARTITIONS
from rag_core.ids import item_key
from rag_core.items import item_file_name
from tests.helpers import build_site
from tests.test_e2e_daemon import rag_run, table

pytestmark = pytest.mark.e2e
PAGES = 12


@pytest.fixture
def site(tmp_path, local_site):
    root = tmp_path / "www"
    build_site(root, PAGES)
    return root, local_site(root).url


def snapshot(data):
    return {
        "chunks": set(table(data, "SELECT item_id, chunk_id, text FROM chunks")),
        "vectors": dict(table(data, "SELECT chunk_id, embedding FROM embeddings")),
        "docs": dict(table(data, "SELECT item_id, content_hash FROM documents")),
    }


def test_recrawl_updates_removes_and_adds_exactly_what_changed(tmp_path, site):
    root, url = site
    data = tmp_path / "data"
    first = rag_run(data, url, "streaming", PRUNE_REMOVED="true")
    before = snapshot(data)
    edited, deleted = item_key(url + "p3.html"), item_key(url + "p5.html")
    added = item_key(url + "extra.html")
    page = (root / "p3.html").read_text()
    (root / "p3.html").write_text(
        page.replace("<h1>Page 3</h1>", "<h1>Page 3</h1><p>New text.</p>")
    )
    (root / "p5.html").unlink()  # still linked from every page: the re-crawl gets a 404
    (root / "extra.html").write_text(
        "<html><head><title>Extra</title></head><body><main><h1>Extra</h1>"
        "<p>A page added after the first crawl, about retention policies.</p></main></body></html>"
    )
    # Reached as a second start URL, so no other page (and its links) changes. Batch mode, so
    # that the run count below is exact: streaming starts a run for whatever has arrived at
    # each sensor tick, and on a busy machine the two changed pages arrive in different ticks
    # (two ingestion runs, both correct). Both modes store identical rows (test_e2e_daemon).
    second = rag_run(data, url, "batch", url + "extra.html", PRUNE_REMOVED="true")
    after = snapshot(data)

    assert first["pages"] == PAGES + 1 and second["pages"] == PAGES + 1  # pages and the index
    assert second["dagster_runs"] == 3  # the crawl, one ingestion run, one prune run
    # Exactly one update, one removal, one addition.
    assert set(after["docs"]) == set(before["docs"]) - {deleted} | {added}
    changed = {k for k in after["docs"] if before["docs"].get(k) != after["docs"][k]}
    assert changed == {edited, added}
    # Nothing of the deleted page is left anywhere; its partition and file are gone.
    for name in ("raw_items", "documents", "chunks", "embeddings", "ingest_errors"):
        assert table(data, f"SELECT count(*) FROM {name} WHERE item_id = '{deleted}'") == [(0,)]
    assert not (data / "raw" / item_file_name(deleted)).exists()
    with open_instance(data / "dagster_home") as instance:
        partitions = set(instance.get_dynamic_partitions(ITEMS_PARTITIONS))
    assert deleted not in partitions and added in partitions
    # The rest is untouched: same chunks, same vectors, and none of them re-embedded.
    unchanged = set(before["docs"]) - {edited, deleted}
    assert {c for c in after["chunks"] if c[0] in unchanged} == {
        c for c in before["chunks"] if c[0] in unchanged
    }
    new_chunks = {c[1] for c in after["chunks"] if c[0] in {edited, added}}
    new_chunks -= {c[1] for c in before["chunks"]}
    assert second["chunks_embedded"] == len(new_chunks) > 0
    assert second["ingestion_runs"] == 1
    # The edited page's old chunks are replaced, none left behind.
    old_edited = {c[1] for c in before["chunks"] if c[0] == edited}
    assert not old_edited & set(after["vectors"]) - {c[1] for c in after["chunks"]}
    assert set(after["vectors"]) == {c[1] for c in after["chunks"]}
