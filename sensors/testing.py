"""Sensor contexts with this project's resources, for evaluating a sensor in-process.

Tests and ``bench/sensor_tick.py`` tick the item-file sensor without a daemon; they build the
context here so that the resources a sensor needs are listed once.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from resources.duckdb_store import DuckDBStore
from resources.raw_items import RawItemStore


def raw_item_files_context(
    instance: dg.DagsterInstance,
    raw_dir: Path,
    cursor: str | None = None,
    raw_store: RawItemStore | None = None,
) -> dg.SensorEvaluationContext:
    """A context for the item-file sensor over ``raw_dir``; its DuckDB file sits beside the
    folder (``raw_dir/../rag.duckdb``), as in a data folder. ``raw_store`` replaces the store
    of ``raw_dir`` (a test's slow or failing stand-in)."""
    return dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "raw_store": raw_store or RawItemStore(raw_dir=str(raw_dir)),
            "duckdb": DuckDBStore(path=str(Path(raw_dir).parent / "rag.duckdb")),
        },
    )


def apply_partition_requests(instance: dg.DagsterInstance, result) -> int:
    """Add a sensor result's dynamic partitions to ``instance``, as the daemon does before it
    launches the result's runs; the number of keys added."""
    added = 0
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        added += len(request.partition_keys)
    return added
