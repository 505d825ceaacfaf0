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


def lane_in_flight(instance: dg.DagsterInstance, lane: str) -> bool:
    """Whether a run of ``lane`` (ingest or crawl) is queued or running."""
    runs = instance.get_run_records(
        filters=dg.RunsFilter(statuses=IN_FLIGHT, tags={LANE_TAG: lane}), limit=1
    )
    return bool(runs)


def blocking_run(instance: dg.DagsterInstance, mode: str) -> str | None:
    """Why new items must wait: an ingestion run in flight, or (batch mode) a crawl."""
    if lane_in_flight(instance, "ingest"):
        return "the ingestion run in flight"
    if mode == "batch" and lane_in_flight(instance, "crawl"):
        return "the crawl to finish (batch mode)"
    return None


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


def build_raw_item_files_sensor(mode: str = "streaming") -> dg.SensorDefinition:
    """The sensor for PIPELINE_MODE ``mode``: streaming ingests during the crawl, batch after it."""

    @dg.sensor(
        name="raw_item_files",
        job=ingest_job,
        minimum_interval_seconds=1,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Scans data/raw for new item files, registers one `items` partition per file, and "
            "requests ONE ingestion run per tick for all of them, never while another ingestion "
            "run is in flight: batches grow under load and shrink when it is light. "
            f"Mode: {mode}" + (" (waits for the crawl to finish)." if mode == "batch" else ".")
        ),
    )
    def raw_item_files(context: dg.SensorEvaluationContext, raw_store: RawItemStore):
        """Turns new item files into partitions and micro-batched ingestion runs."""
        return evaluate_files(context, raw_store, mode)

    return raw_item_files


def evaluate_files(
    context: dg.SensorEvaluationContext, raw_store: RawItemStore, mode: str
) -> dg.SensorResult:
    """One tick: register new partitions; request one run for all waiting items unless blocked."""
    started = time.monotonic()
    cursor = FilesCursor.parse(context.cursor)
    known = context.instance.get_dynamic_partitions(ITEMS_PARTITIONS_NAME)
    known_set = set(known)
    new = [key for key, _ in raw_store.scan() if key not in known_set]
    # Pending keys deleted from the partitions meanwhile (by a user) are dropped.
    pending = [k for k in dict.fromkeys(cursor.pending + new) if k in known_set or k in new]
    add = [items_partitions.build_add_request(new)] if new else []
    scan_s = time.monotonic() - started
    if not pending:
        return dg.SensorResult(
            skip_reason=f"no new item files ({len(known)} known, {scan_s:.2f} s)"
        )
    blocker = blocking_run(context.instance, mode)
    if blocker:
        cursor.pending = pending
        context.log.info(f"{len(new)} new item(s); {len(pending)} wait for {blocker}")
        return dg.SensorResult(
            dynamic_partitions_requests=add,
            cursor=cursor.dump(),
            skip_reason=f"{len(pending)} item(s) wait for {blocker}",
        )
    cursor.pending = []
    cursor.batches += 1
    request = range_request(known + new, pending, {"rag/batch": str(cursor.batches)})
    context.log.info(f"requesting one run for {len(pending)} item(s) ({scan_s:.2f} s scan)")
    return dg.SensorResult(
        run_requests=[request], dynamic_partitions_requests=add, cursor=cursor.dump()
    )
