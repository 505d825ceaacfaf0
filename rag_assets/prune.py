"""Removal of pages that are gone from the site (PRUNE_REMOVED=true)."""

import time

import dagster as dg

from rag_assets.crawl import crawled_pages
from rag_assets.jobs import prune_job
from rag_core import prune
from rag_core.constants import ITEMS_PARTITIONS, LANE_INGEST, LANE_TAG, REMOVED_PAGES_ASSET
from rag_core.settings import Settings

RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
# The daemon retries a failed run within seconds; a failure older than this gets no retry.
RETRY_WINDOW_S = 600.0
FINAL = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def held_partitions(instance: dg.DagsterInstance, this_run: str) -> set[str]:
    """Range boundaries of ingest-lane runs that may still execute (in flight, or failed with
    a retry to come): deleting such a partition would make that run's range unresolvable."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={LANE_TAG: LANE_INGEST}), limit=200
    )
    parents = {r.dagster_run.tags.get("dagster/parent_run_id") for r in records}
    retries = instance.run_retries_max_retries if instance.run_retries_enabled else 0
    held: set[str] = set()
    for record in records:
        run = record.dagster_run
        if run.run_id == this_run:
            continue
        retriable = (
            run.status == dg.DagsterRunStatus.FAILURE
            and run.run_id not in parents
            and int(run.tags.get("dagster/retry_number", "0")) < retries
            and time.time() - (record.end_time or 0) < RETRY_WINDOW_S
        )
        if run.status not in FINAL or retriable:
            held.update(run.tags[t] for t in RANGE_TAGS if t in run.tags)
    return held

DESCRIPTION = (
    "Pages the last crawl showed to be gone (404/410, or not reached by a complete crawl), "
    "removed from every table{graph}, from data/raw and from the `items` partitions. "
    "Requested by the raw_item_files sensor when no ingestion run is in flight."
)


def build_removed_pages(with_graph: bool = False) -> dg.AssetsDefinition:
    """The pruning asset; with the graph sink it removes the pages from the graph too."""

    @dg.asset(
        name=REMOVED_PAGES_ASSET,
        group_name="crawl",
        kinds={"duckdb", "neo4j"} if with_graph else {"duckdb"},
        deps=[crawled_pages],
        required_resource_keys={"raw_store", "duckdb"} | ({"graph"} if with_graph else set()),
        description=DESCRIPTION.format(graph=" and from the graph" if with_graph else ""),
    )
    def removed_pages(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Pages removed from the stores because the site no longer has them."""
        started = time.monotonic()
        raw_store, duckdb = context.resources.raw_store, context.resources.duckdb
        plan = prune.read_removals(raw_store.folder)
        keys = sorted(plan)
        store = duckdb.get_store()
        urls = store.urls(keys)
        store.delete_items(keys)  # one transaction: a page is gone from every table or none
        if with_graph and keys:
            context.resources.graph.write_pages([], removed=keys)
        held = held_partitions(context.instance, context.run_id) & set(keys)
        for key in keys:
            raw_store.path_for(key).unlink(missing_ok=True)
            if key not in held:
                context.instance.delete_dynamic_partition(ITEMS_PARTITIONS, key)
        # A held partition stays requested: the next prune deletes it once its run is done.
        prune.clear_removals(raw_store.folder, {k: v for k, v in plan.items() if k not in held})
        context.log.info(f"removed {len(keys)} page(s) gone from the site")
        if held:
            # Failing makes the sensor back off and request the prune again later (no loop).
            raise dg.Failure(
                description=f"{len(held)} partition(s) kept until a run that may still retry "
                "is done; the next prune deletes them",
                metadata={"held": dg.MetadataValue.json(sorted(held))},
            )
        lines = [f"| `{k}` | {urls.get(k, '')} | {plan[k]} |" for k in keys[:50]]
        table = "| item | url | reason |\n| --- | --- | --- |\n" + "\n".join(lines)
        return dg.MaterializeResult(
            metadata={
                "removed": dg.MetadataValue.int(len(keys)),
                "partitions_held": dg.MetadataValue.int(len(held)),
                "pages": dg.MetadataValue.md(table if lines else "nothing to remove"),
                "elapsed_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
            }
        )

    return removed_pages


def prune_definitions(settings: Settings) -> dg.Definitions:
    """The pruning area: the removal asset and its job. With the graph sink the asset removes
    the pages from the graph in the same step (after the DuckDB transaction), so that a page
    never outlives its removal there."""
    return dg.Definitions(
        assets=[build_removed_pages(with_graph=settings.use_neo4j)], jobs=[prune_job]
    )
