"""A run processes exactly the items it was requested for, whatever happens before its retry."""

from __future__ import annotations

import duckdb

from rag_core import batches
from rag_core.constants import BATCH_ITEMS_TAG, ITEMS_METADATA, ITEMS_PARTITIONS, MANIFEST_TAG
from rag_core.items import item_file_name
from tests.helpers import evaluate_sensor, run_request, write_page


def items_of(result, asset):
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]]
    return events[0].materialization.metadata[ITEMS_METADATA].value if events else None


def partitions_of(result, asset):
    events = result.get_asset_materialization_events()
    return {e.materialization.partition for e in events if e.asset_key.path == [asset]}


def texts(settings):
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return dict(con.execute("SELECT item_id, text FROM documents").fetchall())


def test_reorder_and_prune_between_request_and_retry(instance, settings):
    raw = settings.raw_dir
    keys = [write_page(raw, f"http://site.test/p{i}", f"P{i}", "<p>first</p>") for i in range(5)]
    first = evaluate_sensor(instance, raw)
    assert run_request(instance, settings, first.run_requests[0], raise_on_error=False).success
    # Pages 1 and 3 change: one run is requested for exactly them.
    for i in (1, 3):
        write_page(raw, f"http://site.test/p{i}", f"P{i}", "<p>second version</p>")
    second = evaluate_sensor(instance, raw, first.cursor)
    request = second.run_requests[0]
    # Before that run executes (or before its retry): page 1 changes again and is requested
    # on its own, and page 2 (inside the run's range) is pruned.
    write_page(raw, "http://site.test/p1", "P1", "<p>third version</p>")
    third = evaluate_sensor(instance, raw, second.cursor)
    assert third.run_requests
    instance.delete_dynamic_partition(ITEMS_PARTITIONS, keys[2])
    (raw / item_file_name(keys[2])).unlink()
    result = run_request(instance, settings, request, raise_on_error=False)
    assert result.success
    assert items_of(result, "embeddings") == 2
    # The upstream stages are materialised per partition as each sub-batch is published:
    # exactly the two requested items.
    for asset in ("raw_items", "documents", "chunks"):
        assert partitions_of(result, asset) == {keys[1], keys[3]}, asset
    stored = texts(settings)
    assert "third version" in stored[keys[1]] and "second version" in stored[keys[3]]
    assert "first" in stored[keys[0]] and "first" in stored[keys[4]]
    # The manifest is what fixed the set.
    assert batches.read_manifest(raw, request.tags[MANIFEST_TAG]) == [keys[1], keys[3]]


def test_the_partition_order_never_changes(instance, tmp_path):
    raw = tmp_path / "raw"
    keys = [write_page(raw, f"http://site.test/p{i}", f"P{i}", "<p>x</p>") for i in range(4)]
    first = evaluate_sensor(instance, raw)
    write_page(raw, "http://site.test/p1", "P1", "<p>changed</p>")
    changed = evaluate_sensor(instance, raw, first.cursor)
    assert instance.get_dynamic_partitions(ITEMS_PARTITIONS) == keys
    tags = changed.run_requests[0].tags
    assert batches.read_manifest(raw, tags[MANIFEST_TAG]) == [keys[1]]
    assert tags[BATCH_ITEMS_TAG] == "1"
