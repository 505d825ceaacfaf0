"""The raw_item_files sensor, evaluated in-process against an ephemeral Dagster instance."""

from __future__ import annotations

import json
import time
import uuid

import dagster as dg
from dagster._core.storage.dagster_run import DagsterRun

from rag_core.batches import read_manifest
from rag_core.constants import BATCH_ITEMS_TAG, INGEST_JOB, ITEMS_PARTITIONS, LANE_TAG, MANIFEST_TAG
from sensors.raw_item_files import COLD_START_BATCH, QUIET_SPELL_S, build_raw_item_files_sensor
from tests.helpers import evaluate_sensor, write_page

raw_item_files = build_raw_item_files_sensor("streaming")
batch_sensor = build_raw_item_files_sensor("batch")
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def add_run(instance, status, lane="ingest"):
    run = DagsterRun(
        job_name=INGEST_JOB, run_id=str(uuid.uuid4()), status=status, tags={LANE_TAG: lane}
    )
    instance.run_storage.add_run(run)
    return run


def test_no_files_skips(instance, tmp_path):
    result = evaluate_sensor(instance, tmp_path / "raw")
    assert not result.run_requests
    assert "no new or changed item files" in result.skip_reason.skip_message


def test_new_files_become_partitions_and_one_range_run(instance, tmp_path):
    raw = tmp_path / "raw"
    keys = [write_page(raw, f"http://site.test/p{i}", f"Page {i}", "<p>x</p>") for i in range(5)]
    (raw / ".tmp_abc.json").write_text("{}")  # a write in progress is not an item
    (raw / "notes.txt").write_text("ignored")
    result = evaluate_sensor(instance, raw)
    assert sorted(instance.get_dynamic_partitions(ITEMS_PARTITIONS)) == sorted(keys)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    order = instance.get_dynamic_partitions(ITEMS_PARTITIONS)
    assert request.tags[RANGE_START] == order[0]
    assert request.tags[RANGE_END] == order[-1]
    assert request.tags[BATCH_ITEMS_TAG] == "5"
    assert request.job_name == INGEST_JOB
    # The next tick finds nothing new.
    again = evaluate_sensor(instance, raw, result.cursor)
    assert not again.run_requests


def test_items_wait_while_a_run_is_in_flight_then_go_in_one_batch(instance, tmp_path):
    raw = tmp_path / "raw"
    write_page(raw, "http://site.test/a", "A", "<p>a</p>")
    first = evaluate_sensor(instance, raw)
    assert len(first.run_requests) == 1
    run = add_run(instance, dg.DagsterRunStatus.STARTED)
    later = [write_page(raw, f"http://site.test/b{i}", f"B{i}", "<p>b</p>") for i in range(3)]
    waiting = evaluate_sensor(instance, raw, first.cursor)
    assert not waiting.run_requests
    assert set(later) <= set(instance.get_dynamic_partitions(ITEMS_PARTITIONS))
    assert json.loads(waiting.cursor)["pending"] == later
    more = write_page(raw, "http://site.test/c", "C", "<p>c</p>")
    still = evaluate_sensor(instance, raw, waiting.cursor)
    assert not still.run_requests
    instance.report_run_failed(run)  # the run in flight ends
    go = evaluate_sensor(instance, raw, still.cursor)
    assert len(go.run_requests) == 1
    tags = go.run_requests[0].tags
    assert tags[BATCH_ITEMS_TAG] == "4"
    order = instance.get_dynamic_partitions(ITEMS_PARTITIONS)
    assert (tags[RANGE_START], tags[RANGE_END]) == (later[0], more)
    assert order.index(later[0]) < order.index(more)


def test_a_crawl_run_in_flight_does_not_block_ingestion(instance, tmp_path):
    raw = tmp_path / "raw"
    add_run(instance, dg.DagsterRunStatus.STARTED, lane="crawl")
    write_page(raw, "http://site.test/a", "A", "<p>a</p>")
    assert len(evaluate_sensor(instance, raw).run_requests) == 1


def test_garbled_cursor_is_treated_as_empty(instance, tmp_path):
    raw = tmp_path / "raw"
    write_page(raw, "http://site.test/a", "A", "<p>a</p>")
    assert len(evaluate_sensor(instance, raw, cursor="not json").run_requests) == 1


def test_ten_thousand_files_give_capped_runs(instance, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(10_000):
        (raw / f"item_{i:016x}.json").write_text("{}")
    result = evaluate_sensor(instance, raw)
    # A cold start: a small first batch, so the first vectors are stored within seconds...
    assert [r.tags[BATCH_ITEMS_TAG] for r in result.run_requests] == ["8"]
    assert len(instance.get_dynamic_partitions(ITEMS_PARTITIONS)) == 10_000
    # ...and the rest in runs of MAX_BATCH_ITEMS (1000 by default): bounded memory per run.
    rest = evaluate_sensor(instance, raw, result.cursor)
    assert [r.tags[BATCH_ITEMS_TAG] for r in rest.run_requests] == ["1000"]
    order = instance.get_dynamic_partitions(ITEMS_PARTITIONS)
    assert rest.run_requests[0].tags[RANGE_START] == order[8]
    assert rest.run_requests[0].tags[RANGE_END] == order[1007]


def test_batch_mode_waits_for_the_crawl_then_takes_everything(instance, tmp_path):
    raw = tmp_path / "raw"
    crawl = add_run(instance, dg.DagsterRunStatus.STARTED, lane="crawl")
    keys = [write_page(raw, f"http://site.test/p{i}", f"P{i}", "<p>x</p>") for i in range(3)]
    waiting = evaluate_sensor(instance, raw, sensor=batch_sensor)
    assert not waiting.run_requests
    assert "crawl to finish" in waiting.skip_reason.skip_message
    assert set(keys) == set(instance.get_dynamic_partitions(ITEMS_PARTITIONS))
    instance.report_run_failed(crawl)
    go = evaluate_sensor(instance, raw, waiting.cursor, sensor=batch_sensor)
    assert [r.tags[BATCH_ITEMS_TAG] for r in go.run_requests] == ["3"]
    # Batch mode has no cold-start cap: everything after the crawl goes in one run.
    many = [write_page(raw, f"http://site.test/m{i}", f"M{i}", "<p>m</p>") for i in range(20)]
    crawl2 = add_run(instance, dg.DagsterRunStatus.STARTED, lane="crawl")
    held = evaluate_sensor(instance, raw, go.cursor, sensor=batch_sensor)
    instance.report_run_failed(crawl2)
    final = evaluate_sensor(instance, raw, held.cursor, sensor=batch_sensor)
    assert [r.tags[BATCH_ITEMS_TAG] for r in final.run_requests] == [str(len(many))]


def test_rewritten_file_is_requested_again_in_a_fixed_order(instance, tmp_path):
    raw = tmp_path / "raw"
    keys = [write_page(raw, f"http://site.test/p{i}", f"P{i}", "<p>x</p>") for i in range(4)]
    first = evaluate_sensor(instance, raw)
    assert first.run_requests[0].tags[BATCH_ITEMS_TAG] == "4"
    # Nothing rewritten: the next tick requests nothing (unchanged pages cost no run).
    idle = evaluate_sensor(instance, raw, first.cursor)
    assert not idle.run_requests
    write_page(raw, "http://site.test/p1", "P1", "<p>changed text</p>")
    added = write_page(raw, "http://site.test/new", "New", "<p>n</p>")
    changed = evaluate_sensor(instance, raw, idle.cursor)
    assert len(changed.run_requests) == 1
    tags = changed.run_requests[0].tags
    # The order never changes (a retried run resolves the same range); the range spans the
    # changed page to the new one and the run's manifest names exactly the two.
    assert instance.get_dynamic_partitions(ITEMS_PARTITIONS) == [*keys, added]
    assert (tags[RANGE_START], tags[RANGE_END]) == (keys[1], added)
    assert tags[BATCH_ITEMS_TAG] == "2"
    assert read_manifest(raw, tags[MANIFEST_TAG]) == [keys[1], added]


def test_items_that_waited_behind_a_long_run_are_not_a_cold_start(instance, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    for i in range(30):
        write_page(raw, f"http://site.test/p{i}", f"P{i}", "<p>x</p>")
    first = evaluate_sensor(instance, raw)
    assert [r.tags[BATCH_ITEMS_TAG] for r in first.run_requests] == [str(COLD_START_BATCH)]
    run = add_run(instance, dg.DagsterRunStatus.STARTED)
    # The run takes longer than a quiet spell (a slow machine, a big batch, Celery workers);
    # the other items wait for it all along: when it ends that is no quiet spell, and they
    # go in one run rather than in cold-start batches, one slow run after another.
    later = time.time() + QUIET_SPELL_S + 30
    monkeypatch.setattr(time, "time", lambda: later)
    waiting = evaluate_sensor(instance, raw, first.cursor)
    assert not waiting.run_requests
    instance.report_run_failed(run)
    go = evaluate_sensor(instance, raw, waiting.cursor)
    # The 22 that waited, and the 8 of the failed run (the stores lack them: reconciliation
    # asks for them again), in one run.
    assert [r.tags[BATCH_ITEMS_TAG] for r in go.run_requests] == ["30"]


def test_a_backlog_is_registered_a_bounded_slice_per_tick_each_file_once(
    instance, tmp_path, monkeypatch
):
    """A backlog larger than MAX_WAITING_KEYS is taken in slices, oldest first: each tick
    registers and holds a bounded number of keys, and every file goes in exactly one run."""
    from sensors import raw_item_files as module

    monkeypatch.setattr(module, "MAX_WAITING_KEYS", 20, raising=False)
    sensor = build_raw_item_files_sensor("streaming", max_items=8)
    raw = tmp_path / "raw"
    keys = [write_page(raw, f"http://site.test/p{i}", f"P{i}", "<p>x</p>") for i in range(50)]
    cursor, requested, ticks = None, [], 0
    while len(requested) < len(keys) and ticks < 30:
        result = evaluate_sensor(instance, raw, cursor, sensor=sensor)
        ticks += 1
        cursor = result.cursor
        assert len(json.loads(cursor)["pending"]) <= 20
        assert len(instance.get_dynamic_partitions(ITEMS_PARTITIONS)) <= len(requested) + 20
        for request in result.run_requests:
            requested += read_manifest(raw, request.tags[MANIFEST_TAG])
    assert sorted(requested) == sorted(keys)  # each file once, none lost
    assert ticks > 1
    assert not evaluate_sensor(instance, raw, cursor, sensor=sensor).run_requests
