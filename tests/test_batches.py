"""A run processes exactly the items it was requested for, whatever happens before its retry."""

from __future__ import annotations

import dagster as dg
import duckdb

from rag_assets.definitions import build_definitions
from rag_assets.ingest import chunks, documents, embeddings, raw_items
from rag_core import batches
from rag_core.constants import BATCH_ITEMS_TAG, ITEMS_METADATA, ITEMS_PARTITIONS, MANIFEST_TAG
from rag_core.items import item_file_name
from tests.helpers import settings_for, write_page
from tests.test_sensor import evaluate, instance  # noqa: F401 - the fixture


def run_like(instance, settings, request):  # noqa: F811
    """Execute ``request`` as the daemon would (and as its retry would, later)."""
    return dg.materialize(
        [raw_items, documents, chunks, embeddings],
        instance=instance,
        resources=build_definitions(settings).resources,
        tags=request.tags,
        raise_on_error=False,
    )


def items_of(result, asset):
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]]
    return events[0].materialization.metadata[ITEMS_METADATA].value if events else None


def texts(settings):
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return dict(con.execute("SELECT item_id, text FROM documents").fetchall())


def test_reorder_and_prune_between_request_and_retry(instance, tmp_path):  # noqa: F811
    settings = settings_for(tmp_path / "data", EMBEDDING_SERVER="false")
    raw = settings.raw_dir
    keys = [write_page(raw, f"http://site.test/p{i}", f"P{i}", "<p>first</p>") for i in range(5)]
    first = evaluate(instance, raw)
    assert run_like(instance, settings, first.run_requests[0]).success
    # Pages 1 and 3 change: one run is requested for exactly them.
    for i in (1, 3):
        write_page(raw, f"http://site.test/p{i}", f"P{i}", "<p>second version</p>")
    second = evaluate(instance, raw, first.cursor)
    request = second.run_requests[0]
    # Before that run executes (or before its retry): page 1 changes again and is requested
    # on its own, and page 2 (inside the run's range) is pruned.
    write_page(raw, "http://site.test/p1", "P1", "<p>third version</p>")
    third = evaluate(instance, raw, second.cursor)
    assert third.run_requests
    instance.delete_dynamic_partition(ITEMS_PARTITIONS, keys[2])
    (raw / item_file_name(keys[2])).unlink()
    result = run_like(instance, settings, request)
    assert result.success
    assert [items_of(result, a) for a in ("raw_items", "documents", "embeddings")] == [2, 2, 2]
    stored = texts(settings)
    assert "third version" in stored[keys[1]] and "second version" in stored[keys[3]]
    assert "first" in stored[keys[0]] and "first" in stored[keys[4]]
    # The manifest is what fixed the set.
    assert batches.read_manifest(raw, request.tags[MANIFEST_TAG]) == [keys[1], keys[3]]


def test_the_partition_order_never_changes(instance, tmp_path):  # noqa: F811
    raw = tmp_path / "raw"
    keys = [write_page(raw, f"http://site.test/p{i}", f"P{i}", "<p>x</p>") for i in range(4)]
    first = evaluate(instance, raw)
    write_page(raw, "http://site.test/p1", "P1", "<p>changed</p>")
    changed = evaluate(instance, raw, first.cursor)
    assert instance.get_dynamic_partitions(ITEMS_PARTITIONS) == keys
    tags = changed.run_requests[0].tags
    assert batches.read_manifest(raw, tags[MANIFEST_TAG]) == [keys[1]]
    assert tags[BATCH_ITEMS_TAG] == "1"
