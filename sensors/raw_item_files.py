"""Sensor: each new item file becomes an ``items`` partition; one run per tick ingests them
(at most MAX_BATCH_ITEMS / MAX_BATCH_MB), with the exact keys in a batch manifest; it also
requests prunes (with backoff) and reconciles the stores with the item files."""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

import dagster as dg

from rag_assets.jobs import ingest_job, prune_job
from rag_core import priority, prune, reconcile
from rag_core.batches import remove_old_manifests, write_manifest
from rag_core.constants import (
    BATCH_ITEMS_TAG,
    BATCH_TAG,
    IN_FLIGHT_STATUSES,
    INGEST_JOB,
    ITEMS_PARTITIONS,
    LANE_CRAWL,
    LANE_INGEST,
    LANE_TAG,
    MANIFEST_TAG,
    PRUNE_JOB,
    RAW_ITEM_FILES_SENSOR,
    REMOVALS_TAG,
)
from rag_core.settings import default
from rag_core.stores import StoreLockedError

if TYPE_CHECKING:  # the class is not exported by dagster; define_asset_job returns it
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )
from resources.duckdb_store import DuckDBStore
from resources.raw_items import RawItemStore

IN_FLIGHT = [dg.DagsterRunStatus(status) for status in IN_FLIGHT_STATUSES]


# The first batch after a quiet spell is capped: every stage of a run handles the whole batch
# before the next starts, so a small first batch gets the first vectors stored within seconds,
# while the pages that arrive meanwhile make the next batch large (and cheap per item).
COLD_START_BATCH = 8
QUIET_SPELL_S = 60.0

# Files whose mtime is within this lag of the scan's start are re-examined on the next tick:
# an atomic rename keeps the temp file's mtime, so a file can appear slightly "in the past".
MTIME_LAG_NS = 5_000_000_000

# At most this many items wait in the cursor; past it new files are left for later ticks
# (oldest first). A backlog of 100,000 files (a re-index, files copied in) then costs each tick
# a bounded registration and cursor, instead of registering every partition in one tick
# (SQLite took ~4 s for 100,000) and carrying every key in the cursor; runs take at most
# MAX_BATCH_ITEMS of them anyway.
MAX_WAITING_KEYS = 10_000

# A failed prune run (e.g. the graph server down) is retried after 30 s, 60 s, ... at most
# 15 min; ingestion goes on meanwhile instead of waiting behind it.
PRUNE_BACKOFF_S = 30.0
DEFAULT_MAX_ITEMS: int = default("MAX_BATCH_ITEMS")  # type: ignore[assignment]
DEFAULT_MAX_BYTES: int = default("MAX_BATCH_MB") * 1024 * 1024  # type: ignore[operator]
PRUNE_BACKOFF_MAX_S = 900.0


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
    # Reconciliation (rag_core.reconcile): when it last ran, and per key re-requested by it
    # [requests so far, earliest next request].
    last_reconcile_at: float = 0.0
    attempts: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> "FilesCursor":
        if not raw:
            return cls()
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return cls()

    def dump(self) -> str:
        # Not dataclasses.asdict: it deep-copies every key of ``pending`` and ``recent``
        # (1 s of a tick with 100,000 waiting); the fields are JSON types already.
        return json.dumps({f.name: getattr(self, f.name) for f in fields(self)})

    def touched(
        self, files: list[tuple[str, int]], limit: int | None = None
    ) -> tuple[list[str], int]:
        """Keys of files created or rewritten since the last tick, oldest first, at most
        ``limit`` of them; and how many of ``files`` that covers (the rest wait for a later
        tick: pass the count to ``advance``)."""
        watermark, recent = self.watermark_ns, self.recent
        keys: list[str] = []
        for index, (key, mtime) in enumerate(files):
            if mtime > watermark and recent.get(key) != mtime:
                if limit is not None and len(keys) >= limit:
                    return keys, index
                keys.append(key)
        return keys, len(files)

    def advance(
        self, files: list[tuple[str, int]], scan_started_ns: int, handled: int | None = None
    ) -> None:
        """Mark the first ``handled`` listed files (all by default) as handled.

        The watermark never passes the scan's start (less the lag): a file renamed in while
        a slow scan ran may be missing from ``files`` yet older than the newest listed one,
        and must still be found by the next tick. Nor does it pass the last handled file, so
        the files left for later are found again.
        """
        done = files if handled is None else files[:handled]
        if done:
            newest = min(done[-1][1], scan_started_ns)
            self.watermark_ns = max(self.watermark_ns, newest - MTIME_LAG_NS)
        earlier = self.recent
        self.recent = {key: mtime for key, mtime in done if mtime > self.watermark_ns}
        if handled is not None and handled < len(files):
            # A file past the cut that an earlier tick handled (its mtime within the lag of a
            # newer one) stays handled: it must not be asked for twice. (A rewritten one has a
            # new mtime, so the kept entry does not hide it; a deleted one ages out.)
            for key, mtime in earlier.items():
                if mtime > self.watermark_ns and key not in self.recent:
                    self.recent[key] = mtime


def lane_runs(instance: dg.DagsterInstance, lane: str, limit: int = 1) -> list:
    """Up to ``limit`` queued or running runs of ``lane`` (ingest or crawl), as run records."""
    return list(
        instance.get_run_records(
            filters=dg.RunsFilter(statuses=IN_FLIGHT, tags={LANE_TAG: lane}), limit=limit
        )
    )


def lane_in_flight(instance: dg.DagsterInstance, lane: str, limit: int = 1) -> bool:
    """Whether ``limit`` (or more) runs of ``lane`` (ingest or crawl) are queued or running."""
    return len(lane_runs(instance, lane, limit)) >= limit


def blocking_run(instance: dg.DagsterInstance, mode: str, max_runs: int = 1) -> str | None:
    """Why new items must wait: ``max_runs`` ingestion runs in flight (INGEST_MAX_CONCURRENT_RUNS;
    more than one only with a store of many writers), a prune or graph catch-up run in flight
    (they share the lane but never run beside an ingestion run), or (batch mode) a crawl."""
    lane = lane_runs(instance, LANE_INGEST, max_runs)
    # With max_runs > 1 a free slot is not enough: a prune deletes partitions (shifting the
    # range of a run beside it) and rows, a catch-up run writes the same pages to the graph.
    # (Of more than max_runs runs in flight one may go unseen; the count alone blocks then.)
    alone = sorted({r.dagster_run.job_name for r in lane if r.dagster_run.job_name != INGEST_JOB})
    if alone:
        return f"the {' and '.join(alone)} run in flight"
    if len(lane) >= max_runs:
        return "the ingestion run in flight" if max_runs == 1 else f"{max_runs} ingestion runs"
    if mode == "batch" and lane_in_flight(instance, LANE_CRAWL):
        return "the crawl to finish (batch mode)"
    return None


def reconcile_files(
    context: dg.SensorEvaluationContext,
    cursor: FilesCursor,
    raw_store: RawItemStore,
    duckdb: DuckDBStore,
    files: list[tuple[str, int]],
    pending: list[str],
    mode: str,
    fingerprint: "Callable[[], str] | None" = None,
) -> list[str]:
    """Keys to ask for again because the stores do not hold their file's version.

    Cheap: at most every RECONCILE_INTERVAL_S (or when ``rag run`` asks at start), one read
    of ``ingested_files``, and only while no ingestion run is in flight.
    """
    now = time.time()
    requested = reconcile.reconcile_requested_at(raw_store.folder)
    due = now - cursor.last_reconcile_at >= reconcile.RECONCILE_INTERVAL_S
    if not (due or requested > cursor.last_reconcile_at):
        return []
    if blocking_run(context.instance, mode):
        return []
    store = duckdb.get_store(lock_timeout_seconds=2.0)
    try:
        ingested = store.ingested_files()
    except StoreLockedError:
        return []  # a writer holds the file: try again next tick
    waiting = set(pending)
    current = fingerprint() if fingerprint else None
    missing = [k for k in reconcile.unstored(files, ingested, current) if k not in waiting]
    # Asked for by `rag run` at start: the user wants it now, whatever the backoff says.
    forced = requested > cursor.last_reconcile_at
    cursor.last_reconcile_at = now
    retry, give_up, cursor.attempts = reconcile.plan_retries(
        missing, cursor.attempts, now, force=forced
    )
    if give_up:
        mtimes = dict(files)
        message = reconcile.GAVE_UP.format(n=reconcile.MAX_ATTEMPTS)
        try:
            store.record_given_up({k: mtimes[k] for k in give_up}, message, current or "")
        except StoreLockedError:
            pass  # recorded at the next reconciliation
        context.log.warning(f"{len(give_up)} item(s) given up after repeated failed runs")
    if retry:
        context.log.info(f"reconciliation: {len(retry)} item file(s) not stored; asked again")
    return retry


def prune_retry_at(instance: dg.DagsterInstance) -> float:
    """When a prune may be requested again (epoch s; 0 = now): exponential backoff after
    consecutive failed prune runs, so a prune that keeps failing never starves ingestion."""
    records = instance.get_run_records(filters=dg.RunsFilter(job_name=PRUNE_JOB), limit=8)
    failures = 0
    for record in records:  # newest first
        if record.dagster_run.status != dg.DagsterRunStatus.FAILURE:
            break
        failures += 1
    if not failures:
        return 0.0
    last = records[0]
    ended = last.end_time or last.update_timestamp.timestamp()
    return ended + min(PRUNE_BACKOFF_MAX_S, PRUNE_BACKOFF_S * 2 ** (failures - 1))


def choose_batch(
    pending: list[str],
    cold: bool,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    sizes: dict[str, int] | None = None,
) -> tuple[list[str], list[str]]:
    """The keys of the next run and the keys left waiting, from ``pending`` (in order).

    Pure on purpose: the one place that decides what goes into a run. A run holds at most
    ``max_items`` items and ``max_bytes`` of item files (``sizes``; the first item always
    goes, however large), so its memory is bounded; the rest wait for the next run.
    """
    limit = min(max_items, COLD_START_BATCH) if cold else max_items
    batch, total = [], 0
    for key in pending[:limit]:
        size = (sizes or {}).get(key, 0)
        if batch and total + size > max_bytes:
            break
        batch.append(key)
        total += size
    return batch, pending[len(batch) :]


def file_sizes(raw_store: RawItemStore, keys: list[str]) -> dict[str, int]:
    """Sizes of the item files of ``keys`` (a vanished file counts 0)."""
    sizes = {}
    for key in keys:
        try:
            sizes[key] = raw_store.path_for(key).stat().st_size
        except OSError:
            sizes[key] = 0
    return sizes


def range_request(
    keys_in_order: list[str], batch: list[str], tags: dict[str, str], manifest: str
) -> dg.RunRequest:
    """One run for exactly the keys of ``batch``.

    Dagster needs a partition range (from the batch's first to its last key in the partition
    order, which never changes); the range may take in other keys, so the run's manifest
    (rag_core.batches) names the exact keys the assets process.
    """
    position = {key: index for index, key in enumerate(keys_in_order)}
    ordered = sorted(batch, key=position.__getitem__)
    return dg.RunRequest(
        job_name=INGEST_JOB,
        tags={
            **tags,
            "dagster/asset_partition_range_start": ordered[0],
            "dagster/asset_partition_range_end": ordered[-1],
            BATCH_ITEMS_TAG: str(len(ordered)),
            MANIFEST_TAG: manifest,
        },
    )


def build_raw_item_files_sensor(
    mode: str = "streaming",
    max_items: int = DEFAULT_MAX_ITEMS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    fingerprint: "Callable[[], str] | None" = None,
    max_runs: int = 1,
    job: "dg.JobDefinition | UnresolvedAssetJobDefinition | None" = None,
) -> dg.SensorDefinition:
    """The sensor for PIPELINE_MODE ``mode``: streaming ingests during the crawl, batch after it.
    ``max_runs`` ingestion runs may be in flight at once (INGEST_MAX_CONCURRENT_RUNS).

    It launches the ingestion job (``job``, by default ``ingest_job``; it ends with
    graph_pages when the graph area is loaded) and ``prune_job``. The distributed profile
    passes its ingestion job, which runs the steps on Celery workers.
    """

    @dg.sensor(
        name=RAW_ITEM_FILES_SENSOR,
        jobs=[job or ingest_job, prune_job],
        minimum_interval_seconds=1,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Scans data/raw for new item files, registers one `items` partition per file, and "
            "requests ONE ingestion run per tick for all of them (up to MAX_BATCH_ITEMS and "
            "MAX_BATCH_MB), never while another ingestion run is in flight: batches grow under "
            "load and shrink when it is light. Item files the stores do not hold (a failed run, "
            "a changed index fingerprint) are asked for again. "
            f"Mode: {mode}" + (" (waits for the crawl to finish)." if mode == "batch" else ".")
        ),
    )
    def raw_item_files(
        context: dg.SensorEvaluationContext, raw_store: RawItemStore, duckdb: DuckDBStore
    ):
        """Turns new item files into partitions and micro-batched ingestion runs."""
        return evaluate_files(
            context, raw_store, mode, max_items, max_bytes, duckdb, fingerprint, max_runs
        )

    return raw_item_files


def evaluate_files(
    context: dg.SensorEvaluationContext,
    raw_store: RawItemStore,
    mode: str,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    duckdb: DuckDBStore | None = None,
    fingerprint: "Callable[[], str] | None" = None,
    max_runs: int = 1,
) -> dg.SensorResult:
    """One tick: register new partitions; request one run for all waiting items unless blocked.

    A created file is a new partition; a rewritten file (the crawler rewrites a page only when
    its main text changed) is a changed one. Unchanged pages are never touched, so they cost
    no run at all.
    """
    started = time.monotonic()
    instance = context.instance
    cursor = FilesCursor.parse(context.cursor)
    # Items left waiting by an earlier tick (behind a run in flight, or the rest of a batch):
    # however long they waited, no quiet spell has passed for them.
    waited = bool(cursor.pending)
    scan_started_ns = time.time_ns()
    listed = raw_store.scan()
    room = max(0, MAX_WAITING_KEYS - len(cursor.pending))
    touched, handled = cursor.touched(listed, limit=room)
    deferred = handled < len(listed)
    # Only the handled files count from here on (reconciliation included): the rest are new
    # files for later ticks, not missing ones.
    files = listed[:handled] if deferred else listed
    known = list(instance.get_dynamic_partitions(ITEMS_PARTITIONS))
    known_set = set(known)
    new = [key for key in touched if key not in known_set]
    if new:
        # Added here rather than through SensorResult: one query for the whole list, where
        # the daemon would check each key on its own (slow at thousands of keys).
        instance.add_dynamic_partitions(ITEMS_PARTITIONS, new)
        known_set.update(new)
        known += new  # appended in this order: ``known`` stays the partition order
    # Pending keys deleted from the partitions meanwhile (a pruned page) are dropped.
    pending = [k for k in dict.fromkeys(cursor.pending + touched) if k in known_set]
    cursor.advance(listed, scan_started_ns, handled)
    if deferred:
        context.log.info(
            f"{len(pending)} item(s) waiting (at most {MAX_WAITING_KEYS}):"
            " newer item files are registered by later ticks"
        )
    scan_s = time.monotonic() - started
    if duckdb is not None:
        again = reconcile_files(
            context, cursor, raw_store, duckdb, files, pending, mode, fingerprint
        )
        unregistered = [k for k in again if k not in known_set]
        if unregistered:
            instance.add_dynamic_partitions(ITEMS_PARTITIONS, unregistered)
            known_set.update(unregistered)
            known += unregistered
        pending += again
    removals = prune.read_removals(raw_store.folder)
    prune_due = bool(removals) and time.time() >= prune_retry_at(instance)
    if not pending and not prune_due:
        backoff = f"; {len(removals)} removal(s) wait after a failed prune" if removals else ""
        return dg.SensorResult(
            skip_reason=f"no new or changed item files ({len(known_set)} known, {scan_s:.2f} s)"
            + backoff,
            cursor=cursor.dump(),
        )
    blocker = blocking_run(instance, mode, max_runs)
    if prune_due and max_runs > 1 and not blocker and lane_in_flight(instance, LANE_INGEST):
        # A prune runs alone in the lane: with room for more ingestion runs, starting them
        # would keep the lane busy for as long as pages arrive and the prune would never run.
        blocker = "the lane to drain for the prune"
    if prune_due and not blocking_run(instance, mode):  # a prune runs alone in the lane
        # Removal first (it is quick); the waiting items go in the run after it.
        cursor.pending = pending
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(job_name=PRUNE_JOB, tags={REMOVALS_TAG: str(len(removals))})
            ],
            cursor=cursor.dump(),
        )
    if blocker:
        cursor.pending = pending
        context.log.info(f"{len(touched)} new/changed item(s); {len(pending)} wait for {blocker}")
        return dg.SensorResult(
            cursor=cursor.dump(), skip_reason=f"{len(pending)} item(s) wait for {blocker}"
        )
    # The partition order never changes (keys are only appended), so a run's range resolves
    # the same at every retry; the manifest fixes the exact keys.
    order = known
    position = {key: index for index, key in enumerate(order)}
    pending.sort(key=position.__getitem__)
    # Priority (PRIORITY_RULES, sitemap <priority>): highest first, one priority level per run.
    ranks = priority.read_priorities(raw_store.folder)
    pending = priority.order_waiting(pending, ranks)
    now = time.time()
    # Batch mode ingests after the crawl with no cold-start cap; past MAX_BATCH_ITEMS or
    # MAX_BATCH_MB it takes several runs, one after the other (same stored result).
    # A run longer than QUIET_SPELL_S (a slow machine, a large batch, Celery workers) is no
    # quiet spell for the items that waited behind it: they go in one batch, not in small
    # cold-start runs each paying a run's fixed cost.
    cold = mode == "streaming" and not waited and now - cursor.last_request_at > QUIET_SPELL_S
    sizes = file_sizes(raw_store, pending[:max_items])
    batch, _ = choose_batch(pending, cold, max_items, max_bytes, sizes)
    if mode == "streaming":
        # One priority level per run, so a high-priority page never waits for low ones.
        batch = priority.first_tier(batch, ranks)
    cursor.pending = pending[len(batch) :]  # first_tier keeps a prefix of the ordered list
    cursor.batches += 1
    cursor.last_request_at = now
    if cursor.batches % 100 == 1:
        remove_old_manifests(raw_store.folder)
    manifest = write_manifest(raw_store.folder, batch)
    tags = {BATCH_TAG: str(cursor.batches)}
    if ranks:
        tags["dagster/priority"] = str(priority.run_priority(batch, ranks))
    request = range_request(order, batch, tags, manifest)
    context.log.info(
        f"requesting one run for {len(batch)} item(s) ({len(new)} new this tick, "
        f"{len(cursor.pending)} left for the next run{', cold start' if cold else ''}; "
        f"{scan_s:.2f} s scan)"
    )
    return dg.SensorResult(run_requests=[request], cursor=cursor.dump())
