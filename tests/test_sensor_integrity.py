"""The sensor never skips a file (slow scans) and a failing prune never blocks ingestion."""

from __future__ import annotations

import os
import time
import uuid

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from rag_core import prune
from rag_core.constants import (
    BATCH_ITEMS_TAG,
    GRAPH_CATCH_UP_JOB,
    INGEST_JOB,
    ITEMS_PARTITIONS,
    LANE_TAG,
    PRUNE_JOB,
)
from resources.raw_items import RawItemStore
from sensors.raw_item_files import PRUNE_BACKOFF_S, build_raw_item_files_sensor
from sensors.testing import raw_item_files_context
from tests.helpers import evaluate_sensor, write_page

raw_item_files = build_raw_item_files_sensor("streaming")


class SlowScanStore(RawItemStore):
    """A scan that takes 10 s (simulated): it lists the folder, and before it returns, a
    page is renamed in (missed by the listing) and a listed page is rewritten."""

    def scan(self):
        started = time.time_ns()
        files = super().scan()
        late = write_page(self.folder, "http://site.test/late", "Late", "<p>renamed in</p>")
        # The late file was written 1 s into the scan; a listed file was rewritten at 9 s.
        os.utime(self.path_for(late), ns=(started + 1_000_000_000,) * 2)
        key, _ = files[-1]
        rewritten = started + 9_000_000_000
        os.utime(self.path_for(key), ns=(rewritten, rewritten))
        return [*files[:-1], (key, rewritten)]


def test_a_file_renamed_in_during_a_slow_scan_is_not_skipped(instance, tmp_path):
    raw = tmp_path / "raw"
    for i in range(3):
        write_page(raw, f"http://site.test/p{i}", f"P{i}", "<p>x</p>")
    context = raw_item_files_context(instance, raw, raw_store=SlowScanStore(raw_dir=str(raw)))
    first = raw_item_files(context)
    first_keys = set(instance.get_dynamic_partitions(ITEMS_PARTITIONS))
    assert first.run_requests[0].tags[BATCH_ITEMS_TAG] == "3" and len(first_keys) == 3
    late = next(k for k, _ in RawItemStore(raw_dir=str(raw)).scan() if k not in first_keys)
    # The next (normal) tick must find the late file.
    later = evaluate_sensor(instance, raw, first.cursor)
    assert late in instance.get_dynamic_partitions(ITEMS_PARTITIONS)
    assert later.run_requests and later.run_requests[0].tags[BATCH_ITEMS_TAG] == "1"


def add_prune_run(inst, status):
    run = DagsterRun(
        job_name=PRUNE_JOB,
        run_id=str(uuid.uuid4()),
        status=status,
        tags={LANE_TAG: "ingest"},
    )
    inst.run_storage.add_run(run)
    return run


def test_a_failing_prune_backs_off_and_ingestion_goes_on(instance, tmp_path):
    raw = tmp_path / "raw"
    first = evaluate_sensor(instance, raw / "none")
    write_page(raw, "http://site.test/a", "A", "<p>a</p>")
    prune.add_removals(raw, {"0123456789abcdef": "gone"})
    asked = evaluate_sensor(instance, raw, first.cursor)
    assert [r.job_name for r in asked.run_requests] == [PRUNE_JOB]
    # The prune run fails (graph server down): the next ticks ingest, they do not re-prune.
    add_prune_run(instance, dg.DagsterRunStatus.FAILURE)
    tick = evaluate_sensor(instance, raw, asked.cursor)
    assert [r.job_name for r in tick.run_requests] == [INGEST_JOB]
    idle = evaluate_sensor(instance, raw, tick.cursor)
    assert not idle.run_requests and "after a failed prune" in idle.skip_reason.skip_message


def test_the_prune_is_retried_after_the_backoff(instance, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    prune.add_removals(raw, {"0123456789abcdef": "gone"})
    add_prune_run(instance, dg.DagsterRunStatus.FAILURE)
    assert not evaluate_sensor(instance, raw).run_requests
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + PRUNE_BACKOFF_S + 1)
    requests = evaluate_sensor(instance, raw).run_requests
    assert [r.job_name for r in requests] == [PRUNE_JOB]
    # Two failures in a row: the wait doubles.
    add_prune_run(instance, dg.DagsterRunStatus.FAILURE)
    assert not evaluate_sensor(instance, raw).run_requests


def test_batches_are_capped_by_items_and_bytes(instance, tmp_path):
    raw = tmp_path / "raw"
    for i in range(25):
        write_page(raw, f"http://site.test/p{i}", f"P{i}", "<p>x</p>")
    capped = build_raw_item_files_sensor("batch", max_items=10, max_bytes=10**9)
    sizes, cursor = [], None
    for _ in range(4):
        result = evaluate_sensor(instance, raw, cursor, sensor=capped)
        cursor = result.cursor
        sizes += [int(r.tags[BATCH_ITEMS_TAG]) for r in result.run_requests]
    # Batch mode still takes everything, in runs of at most MAX_BATCH_ITEMS.
    assert sizes == [10, 10, 5]
    big = build_raw_item_files_sensor("batch", max_items=100, max_bytes=3 * 1024)
    raw2 = tmp_path / "raw2"
    for i in range(6):
        write_page(raw2, f"http://big.test/p{i}", f"B{i}", "<p>" + "y" * 1500 + "</p>")
    with dg.instance_for_test() as other:
        first = evaluate_sensor(other, raw2, sensor=big)
        assert first.run_requests[0].tags[BATCH_ITEMS_TAG] == "1"  # ~1.8 kB each, 3 kB cap


@pytest.mark.unit
def test_choose_batch_always_takes_one_and_keeps_order():
    from sensors.raw_item_files import choose_batch

    assert choose_batch(["a", "b", "c"], False, 2, 10**9, {}) == (["a", "b"], ["c"])
    assert choose_batch(["a", "b"], False, 10, 5, {"a": 50, "b": 1}) == (["a"], ["b"])
    assert choose_batch(["a", "b", "c"], False, 10, 5, {"a": 2, "b": 2, "c": 2}) == (
        ["a", "b"],
        ["c"],
    )


# -- several ingestion runs at once (INGEST_MAX_CONCURRENT_RUNS > 1): a prune still runs alone --

lanes_of_two = build_raw_item_files_sensor("streaming", max_runs=2)


def add_lane_run(inst, job_name, status=dg.DagsterRunStatus.STARTED):
    run = DagsterRun(
        job_name=job_name, run_id=str(uuid.uuid4()), status=status, tags={LANE_TAG: "ingest"}
    )
    inst.run_storage.add_run(run)
    return run


@pytest.mark.parametrize("job_name", [PRUNE_JOB, GRAPH_CATCH_UP_JOB])
@pytest.mark.parametrize("status", [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED])
def test_no_ingestion_run_starts_beside_a_prune_or_catch_up_run(
    instance, tmp_path, job_name, status
):
    raw = tmp_path / "raw"
    # A prune deletes partitions and rows, a catch-up run writes the same pages to the graph:
    # with room for two ingestion runs, the one of them in flight must still run alone.
    run = add_lane_run(instance, job_name, status)
    write_page(raw, "http://site.test/a", "A", "<p>a</p>")
    waiting = evaluate_sensor(instance, raw, sensor=lanes_of_two)
    assert not waiting.run_requests
    assert job_name in waiting.skip_reason.skip_message
    instance.report_run_failed(run)
    go = evaluate_sensor(instance, raw, waiting.cursor, sensor=lanes_of_two)
    assert [r.job_name for r in go.run_requests] == [INGEST_JOB]


def test_a_due_prune_gets_the_lane_before_more_ingestion_runs(instance, tmp_path):
    raw = tmp_path / "raw"
    first = evaluate_sensor(instance, raw / "none", sensor=lanes_of_two)
    ingesting = add_lane_run(instance, INGEST_JOB)
    prune.add_removals(raw, {"0123456789abcdef": "gone"})
    write_page(raw, "http://site.test/a", "A", "<p>a</p>")
    # One ingestion run in flight and room for another, but a prune is due: new items wait
    # until the lane drains, or ingestion would keep the lane busy and the prune never run.
    waiting = evaluate_sensor(instance, raw, first.cursor, sensor=lanes_of_two)
    assert not waiting.run_requests
    instance.report_run_failed(ingesting)
    pruning = evaluate_sensor(instance, raw, waiting.cursor, sensor=lanes_of_two)
    assert [r.job_name for r in pruning.run_requests] == [PRUNE_JOB]
