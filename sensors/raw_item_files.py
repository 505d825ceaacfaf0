"""Sensor: each new item file becomes an ``items`` partition; one run per tick ingests them all."""

import json
import time
from dataclasses import asdict, dataclass, field

import dagster as dg

from rag_assets.jobs import INGEST_JOB_NAME, LANE_TAG, ingest_job
from rag_assets.partitions import ITEMS_PARTITIONS_NAME, items_partitions
from resources.raw_items import RawItemStore

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dataclass
class FilesCursor:
    """What the sensor remembers between ticks."""

    # Registered partitions whose run has not been requested yet (a run was in flight).
    pending: list[str] = field(default_factory=list)
    batches: int = 0

    @classmethod
    def parse(cls, raw: str | None) -> "FilesCursor":
        if not raw:
            return cls()
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return cls()

    def dump(self) -> str:
        return json.dumps(asdict(self))


def ingestion_in_flight(instance: dg.DagsterInstance) -> bool:
    """Whether an ingestion run is queued or running (new items then wait for the next tick)."""
    runs = instance.get_run_records(
        filters=dg.RunsFilter(statuses=IN_FLIGHT, tags={LANE_TAG: "ingest"}), limit=1
    )
    return bool(runs)


def range_request(
    keys_in_order: list[str], batch: list[str], tags: dict[str, str]
) -> dg.RunRequest:
    """One run for every key of ``batch``: the partition range from its first to its last key."""
    position = {key: index for index, key in enumerate(keys_in_order)}
    ordered = sorted(batch, key=position.__getitem__)
    return dg.RunRequest(
        job_name=INGEST_JOB_NAME,
        tags={
            **tags,
            "dagster/asset_partition_range_start": ordered[0],
            "dagster/asset_partition_range_end": ordered[-1],
            "rag/batch_items": str(len(ordered)),
        },
    )


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Scans data/raw for new item files, registers one `items` partition per file, and "
        "requests ONE ingestion run per tick for all of them, never while another ingestion "
        "run is in flight: batches grow under load and shrink when it is light."
    ),
)
def raw_item_files(context: dg.SensorEvaluationContext, raw_store: RawItemStore):
    """Turns new item files into partitions and micro-batched ingestion runs."""
    started = time.monotonic()
    cursor = FilesCursor.parse(context.cursor)
    known = context.instance.get_dynamic_partitions(ITEMS_PARTITIONS_NAME)
    known_set = set(known)
    new = [key for key, _ in raw_store.scan() if key not in known_set]
    pending = list(dict.fromkeys(cursor.pending + new))
    pending = [key for key in pending if key in known_set or key in new]
    add = [items_partitions.build_add_request(new)] if new else []
    scan_s = time.monotonic() - started
    if not pending:
        return dg.SensorResult(
            skip_reason=f"no new item files ({len(known)} known, {scan_s:.2f} s)"
        )
    if ingestion_in_flight(context.instance):
        cursor.pending = pending
        context.log.info(f"{len(new)} new item(s); {len(pending)} wait for the run in flight")
        return dg.SensorResult(
            dynamic_partitions_requests=add,
            cursor=cursor.dump(),
            skip_reason=f"{len(pending)} item(s) wait for the ingestion run in flight",
        )
    cursor.pending = []
    cursor.batches += 1
    request = range_request(known + new, pending, {"rag/batch": str(cursor.batches)})
    context.log.info(f"requesting one run for {len(pending)} item(s) ({scan_s:.2f} s scan)")
    return dg.SensorResult(
        run_requests=[request], dynamic_partitions_requests=add, cursor=cursor.dump()
    )
