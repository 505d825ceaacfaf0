"""Sensor: each new item file becomes an ``items`` partition; one run per tick ingests them all."""

import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import dagster as dg

from rag_assets.jobs import INGEST_JOB_NAME, LANE_TAG, PRUNE_JOB_NAME, ingest_job, prune_job
from rag_assets.partitions import ITEMS_PARTITIONS_NAME
from rag_core import priority, prune
from resources.raw_items import RawItemStore

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


# The first batch after a quiet spell is capped: every stage of a run handles the whole batch
# before the next starts, so a small first batch gets the first vectors stored within seconds,
# while the pages that arrive meanwhile make the next batch large (and cheap per item).
COLD_START_BATCH = 8
QUIET_SPELL_S = 60.0

# Files whose mtime is within this lag of the newest one are re-examined on the next tick:
# an atomic rename keeps the temp file's mtime, so a file can appear slightly "in the past".
MTIME_LAG_NS = 5_000_000_000


@dataclass
class FilesCursor:
    """What the sensor remembers between ticks."""

    # Partitions waiting for a run (one was in flight when they were found).
    pending: list[str] = field(default_factory=list)
    batches: int = 0
    # Every file with mtime <= watermark_ns has been handled; ``recent`` holds the handled
    # files above it (key -> mtime_ns), so only created or rewritten files count as touched.
    watermark_ns: int = 0
    recent: dict[str, int] = field(default_factory=dict)
    # When the last run was requested (epoch seconds): after a quiet spell the next batch
    # is a cold start and is kept small.
    last_request_at: float = 0.0

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

    def touched(self, files: list[tuple[str, int]]) -> list[str]:
        """Keys of files created or rewritten since the last tick, oldest first."""
        return [
            key
            for key, mtime in files
            if mtime > self.watermark_ns and self.recent.get(key) != mtime
        ]

    def advance(self, files: list[tuple[str, int]]) -> None:
        """Mark every listed file as handled."""
        if files:
            self.watermark_ns = max(self.watermark_ns, files[-1][1] - MTIME_LAG_NS)
        self.recent = {key: mtime for key, mtime in files if mtime > self.watermark_ns}


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


def build_raw_item_files_sensor(
    mode: str = "streaming", job: "UnresolvedAssetJobDefinition | None" = None
) -> dg.SensorDefinition:
    """The sensor for PIPELINE_MODE ``mode``: streaming ingests during the crawl, batch after it.

    ``job`` is the ingestion job to launch (``build_ingest_job``; with the graph sink it
    includes graph_pages); it must be named ``ingest_items``.
    """

    @dg.sensor(
        name="raw_item_files",
        jobs=[job or ingest_job, prune_job],
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
    """One tick: register new partitions; request one run for all waiting items unless blocked.

    A created file is a new partition; a rewritten file (the crawler rewrites a page only when
    its main text changed) is a changed one. Unchanged pages are never touched, so they cost
    no run at all.
    """
    started = time.monotonic()
    instance = context.instance
    cursor = FilesCursor.parse(context.cursor)
    files = raw_store.scan()
    touched = cursor.touched(files)
    known = instance.get_dynamic_partitions(ITEMS_PARTITIONS_NAME)
    known_set = set(known)
    new = [key for key in touched if key not in known_set]
    if new:
        # Added here rather than through SensorResult: one query for the whole list, where
        # the daemon would check each key on its own (slow at thousands of keys).
        instance.add_dynamic_partitions(ITEMS_PARTITIONS_NAME, new)
        known_set.update(new)
    # Pending keys deleted from the partitions meanwhile (a pruned page) are dropped.
    pending = [k for k in dict.fromkeys(cursor.pending + touched) if k in known_set]
    cursor.advance(files)
    scan_s = time.monotonic() - started
    removals = prune.read_removals(raw_store.folder)
    if not pending and not removals:
        return dg.SensorResult(
            skip_reason=f"no new or changed item files ({len(known_set)} known, {scan_s:.2f} s)",
            cursor=cursor.dump(),
        )
    blocker = blocking_run(instance, mode)
    if removals and not blocker:
        # Removal first (it is quick); the waiting items go in the run after it.
        cursor.pending = pending
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(job_name=PRUNE_JOB_NAME, tags={"rag/removals": str(len(removals))})
            ],
            cursor=cursor.dump(),
        )
    if blocker:
        cursor.pending = pending
        context.log.info(f"{len(touched)} new/changed item(s); {len(pending)} wait for {blocker}")
        return dg.SensorResult(
            cursor=cursor.dump(), skip_reason=f"{len(pending)} item(s) wait for {blocker}"
        )
    order = move_to_end(instance, pending)
    position = {key: index for index, key in enumerate(order)}
    pending.sort(key=position.__getitem__)
    # Priority (PRIORITY_RULES, sitemap <priority>): highest first, one priority level per run.
    ranks = priority.read_priorities(raw_store.folder)
    pending = priority.order_waiting(pending, ranks)
    now = time.time()
    # Batch mode promises one run for everything after the crawl: no cold-start cap there.
    cold = mode == "streaming" and now - cursor.last_request_at > QUIET_SPELL_S
    batch = pending[:COLD_START_BATCH] if cold else pending
    batch = priority.first_tier(batch, ranks) if mode == "streaming" else batch
    if ranks and len(batch) < len(pending):
        order = move_to_end(instance, batch)  # the run's range must hold this batch only
    cursor.pending = pending[len(batch) :]
    cursor.batches += 1
    cursor.last_request_at = now
    tags = {"rag/batch": str(cursor.batches)}
    if ranks:
        tags["dagster/priority"] = str(priority.run_priority(batch, ranks))
    request = range_request(order, batch, tags)
    context.log.info(
        f"requesting one run for {len(batch)} item(s) ({len(new)} new this tick, "
        f"{len(cursor.pending)} left for the next run{', cold start' if cold else ''}; "
        f"{scan_s:.2f} s scan)"
    )
    return dg.SensorResult(run_requests=[request], cursor=cursor.dump())


def move_to_end(instance: dg.DagsterInstance, batch: list[str]) -> list[str]:
    """Make ``batch`` the contiguous tail of the partition order; return the new order.

    A run carries a partition *range*. A changed page sits somewhere in the middle of the
    order, so it is deleted and re-added (history is kept: deleting a dynamic partition only
    removes its row from the partitions table). Only done while no ingestion run is in
    flight, whose range would otherwise shift under it.
    """
    order = list(instance.get_dynamic_partitions(ITEMS_PARTITIONS_NAME))
    wanted = set(batch)
    tail_start = len(order)
    while tail_start > 0 and order[tail_start - 1] in wanted:
        tail_start -= 1
    stray = [key for key in order[:tail_start] if key in wanted]
    if not stray:
        return order
    for key in stray:
        instance.delete_dynamic_partition(ITEMS_PARTITIONS_NAME, key)
    instance.add_dynamic_partitions(ITEMS_PARTITIONS_NAME, stray)
    return list(instance.get_dynamic_partitions(ITEMS_PARTITIONS_NAME))
