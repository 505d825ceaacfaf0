"""P11: where the one-partition-per-item design stops, measured on the project's instance.

    python -m bench.partition_scale --files 100000 --run-partitions 10000 --json out.json

Writes ``--files`` tiny item files, then on a fresh instance that uses the project's own
``dagster.yaml`` (the SQLite storage of ``rag_app/dagster_storage.py``):

1. one tick of the ``raw_item_files`` sensor (scan, register every new partition in one
   call, request the run), and an idle tick once all are known;
2. the creation of one ingestion run over ``--run-partitions`` of them, the way the daemon
   creates it for the sensor's request (``create_run_for_job``: execution plan, run row,
   one "materialization planned" event per asset and partition, or per asset with
   ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``), and the resolution of the run's
   partition keys that each of its steps does (``context.partition_keys``);
3. the same run creation with the planned events written one per partition (Dagster's
   default), for comparison.

It measures in-process what a real daemon does for these steps; the launch of the run
process itself (about 3-6 s, independent of the partition count) is not included.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg

from bench.sensor_tick import write_tiny_items

ROOT = Path(__file__).resolve().parent.parent
SUBSET_ENV = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def _planned_events(instance: dg.DagsterInstance, run_id: str) -> int:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=1_000_000
    ).records
    return len(records)


def create_run(instance, job_def, keys: list[str], subset_events: bool) -> dict:
    """Create (not launch) one ingestion run over ``keys`` as a partition range."""
    from dagster._core.definitions.partitions.context import partition_loading_context
    from dagster._core.definitions.partitions.partition_key_range import PartitionKeyRange

    from rag_assets.partitions import items_partitions

    previous = os.environ.get(SUBSET_ENV)
    os.environ[SUBSET_ENV] = "true" if subset_events else "false"
    try:
        tags = {
            **job_def.tags,
            "dagster/asset_partition_range_start": keys[0],
            "dagster/asset_partition_range_end": keys[-1],
        }
        t = time.perf_counter()
        run = instance.create_run_for_job(job_def, tags=tags)
        create_s = time.perf_counter() - t
    finally:
        if previous is None:
            os.environ.pop(SUBSET_ENV, None)
        else:
            os.environ[SUBSET_ENV] = previous
    t = time.perf_counter()
    with partition_loading_context(dynamic_partitions_store=instance):
        resolved = items_partitions.get_partition_keys_in_range(
            PartitionKeyRange(keys[0], keys[-1])
        )
    resolve_s = time.perf_counter() - t
    return {
        "subset_planned_events": subset_events,
        "partitions": len(keys),
        "create_run_s": round(create_s, 3),
        "planned_events": _planned_events(instance, run.run_id),
        "resolve_partition_keys_s": round(resolve_s, 3),
        "resolved_keys": len(resolved),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.partition_scale", description=__doc__)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--run-partitions", type=int, default=10_000)
    parser.add_argument("--skip-default-events", action="store_true",
                        help="do not measure the run creation with one planned event per key")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)

    from bench.sensor_tick import tick
    from rag_assets.definitions import build_definitions
    from rag_core.constants import INGEST_JOB, ITEMS_PARTITIONS
    from rag_core.settings import load_settings
    from sensors.raw_item_files import build_raw_item_files_sensor

    summary: dict = {"files": args.files, "run_partitions": args.run_partitions}
    with tempfile.TemporaryDirectory(prefix="bench-p11-") as tmp:
        home = Path(tmp) / "dagster_home"
        home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
        raw_dir = Path(tmp) / "raw"
        t = time.perf_counter()
        write_tiny_items(raw_dir, 0, args.files)
        summary["write_files_s"] = round(time.perf_counter() - t, 1)
        settings = load_settings({"DATA_DIR": tmp, "DUCKDB_PATH": f"{tmp}/rag.duckdb"})
        job_def = build_definitions(settings).resolve_job_def(INGEST_JOB)
        sensor = build_raw_item_files_sensor("streaming")
        with dg.DagsterInstance.get() as instance:
            try:
                first = tick(sensor, instance, raw_dir, None)
                first["error"] = None
            except Exception as exc:  # the limit we are looking for
                first = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            summary["first_tick"] = {k: v for k, v in first.items() if k != "cursor"}
            keys = instance.get_dynamic_partitions(ITEMS_PARTITIONS)
            summary["partitions_registered"] = len(keys)
            if first.get("cursor"):
                idle = tick(sensor, instance, raw_dir, first["cursor"])
                summary["idle_tick"] = {k: v for k, v in idle.items() if k != "cursor"}
            run_keys = list(keys[: args.run_partitions])
            if run_keys:
                summary["run_subset_events"] = create_run(instance, job_def, run_keys, True)
                if not args.skip_default_events:
                    summary["run_default_events"] = create_run(instance, job_def, run_keys, False)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
