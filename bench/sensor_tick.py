"""P6: one tick of the raw_item_files sensor with many item files waiting, in-process.

    python -m bench.sensor_tick --files 10000 --json out.json

Writes ``--files`` tiny item files, builds the streaming sensor, and evaluates it with
``dg.build_sensor_context`` (through ``sensors/testing.py``) on a ``dg.instance_for_test()``
instance (SQLite storage, as the project's instance). A tick's cost is the evaluation plus
registering its new partitions (the daemon applies the partition requests in the same
tick). Then two more ticks: nothing new (all files known), and 100 new files on top of the
known ones.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import dagster as dg

from rag_core.constants import BATCH_ITEMS_TAG
from rag_core.ids import item_key
from rag_core.items import item_file_name
from sensors.raw_item_files import build_raw_item_files_sensor
from sensors.testing import apply_partition_requests, raw_item_files_context


def write_tiny_items(raw_dir: Path, start: int, count: int) -> None:
    raw_dir.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        key = item_key(f"http://site.test/p{i}")
        (raw_dir / item_file_name(key)).write_text(
            json.dumps({"item_id": key, "url": f"http://site.test/p{i}", "status": 200, "html": ""})
        )


def tick(sensor, instance, raw_dir: Path, cursor: str | None) -> dict:
    context = raw_item_files_context(instance, raw_dir, cursor=cursor)
    t = time.perf_counter()
    result = sensor(context)
    evaluate_s = time.perf_counter() - t
    t = time.perf_counter()
    added = apply_partition_requests(instance, result)
    register_s = time.perf_counter() - t
    return {
        "evaluate_s": round(evaluate_s, 3),
        "register_partitions_s": round(register_s, 3),
        "tick_s": round(evaluate_s + register_s, 3),
        "partitions_added": added,
        "runs_requested": len(result.run_requests or []),
        "items_in_run": sum(
            int(r.tags.get(BATCH_ITEMS_TAG, 0)) for r in (result.run_requests or [])
        ),
        "cursor": result.cursor,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sensor_tick", description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    sensor = build_raw_item_files_sensor("streaming")
    with tempfile.TemporaryDirectory(prefix="bench-sensor-") as tmp, dg.instance_for_test() as inst:
        raw_dir = Path(tmp) / "raw"
        write_tiny_items(raw_dir, 0, args.files)
        first = tick(sensor, inst, raw_dir, None)
        idle = tick(sensor, inst, raw_dir, first["cursor"])
        write_tiny_items(raw_dir, args.files, 100)
        more = tick(sensor, inst, raw_dir, idle["cursor"] or first["cursor"])
    summary = {"files": args.files, "first_tick": first, "idle_tick": idle, "plus_100_tick": more}
    for part in ("first_tick", "idle_tick", "plus_100_tick"):
        summary[part].pop("cursor", None)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
