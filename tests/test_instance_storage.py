"""The project's Dagster instance storage (dagster.yaml -> rag_app.dagster_storage)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter: DAGSTER_HOME and the planned-events switch are process-wide.
CREATE_RUN = """
import dagster as dg
from rag_core.constants import INGEST_JOB, ITEMS_PARTITIONS
from rag_assets.definitions import build_definitions
from tests.helpers import settings_for
from pathlib import Path
import sys

keys = [f"k{i:04d}" for i in range(50)]
with dg.DagsterInstance.get() as instance:
    assert instance.get_ref().storage_data.class_name == "FastSqliteStorage"
    instance.add_dynamic_partitions(ITEMS_PARTITIONS, keys)
    job = build_definitions(settings_for(Path(sys.argv[1]))).resolve_job_def(INGEST_JOB)
    run = instance.create_run_for_job(job, tags={
        **job.tags,
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1],
    })
    planned = instance.get_records_for_run(
        run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    subsets = [r.event_log_entry.dagster_event.event_specific_data.partitions_subset
               for r in planned]
    print(len(planned), sorted(len(s.get_partition_keys()) for s in subsets if s))
"""


def test_run_over_many_partitions_writes_one_planned_event_per_asset(tmp_path):
    """A 50-partition ingestion run is created with 4 planned events, not 200 (one per key)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = dict(os.environ)
    env.pop("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", None)
    env["DAGSTER_HOME"] = str(home)
    out = subprocess.run(
        [sys.executable, "-c", CREATE_RUN, str(tmp_path / "data")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    count, subset_sizes = out.stdout.strip().splitlines()[-1].split(" ", 1)
    # raw_items, documents, chunks, embeddings: one event each, each holding all 50 keys.
    assert int(count) == 4
    assert subset_sizes == "[50, 50, 50, 50]"
