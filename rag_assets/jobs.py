"""Jobs: the crawl, and the item ingestion chain that the sensor launches in micro-batches.

Selections name assets by key (rag_core.constants), so this module imports no asset module
and every area module can import its jobs.
"""

import dagster as dg

from rag_assets.partitions import items_partitions
from rag_core.constants import (
    CRAWL_JOB,
    CRAWLED_PAGES_ASSET,
    GRAPH_CATCH_UP_JOB,
    GRAPH_PAGES_ASSET,
    INGEST_JOB,
    LANE_CRAWL,
    LANE_INGEST,
    LANE_TAG,
    PRUNE_JOB,
    RAW_ITEMS_ASSET,
    REMOVED_PAGES_ASSET,
)


def build_ingest_job(executor_def: dg.ExecutorDefinition | None = None):
    """The ingestion job the sensor launches: raw_items and everything below it, resolved
    against the merged definitions (without the graph area that is raw_items -> documents ->
    chunks -> embeddings; with it, USE_NEO4J, the run ends with graph_pages). ``executor_def``
    overrides the definitions' in-process executor (DEPLOYMENT=distributed: Celery workers,
    rag_assets/distributed.py)."""
    return dg.define_asset_job(
        INGEST_JOB,
        selection=dg.AssetSelection.assets(RAW_ITEMS_ASSET).downstream(),
        partitions_def=items_partitions,
        tags={LANE_TAG: LANE_INGEST},
        executor_def=executor_def,
        description="raw_items -> documents -> chunks -> embeddings (-> graph_pages with the "
        "graph sink) for a batch of item partitions, in one process (torch and the model load "
        "once per run) or, distributed, one step per Celery task.",
    )


ingest_job = build_ingest_job()

# Writes missed partitions to the graph after an outage. It shares the ingest lane, so it never
# runs beside an ingestion run (both would write the same pages) and the sensor waits for it.
graph_catch_up_job = dg.define_asset_job(
    GRAPH_CATCH_UP_JOB,
    selection=[GRAPH_PAGES_ASSET],
    partitions_def=items_partitions,
    tags={LANE_TAG: LANE_INGEST},
    description="graph_pages for item partitions whose embeddings are newer than their graph "
    "write (launched by the graph_catch_up sensor).",
)

crawl_job = dg.define_asset_job(
    CRAWL_JOB,
    selection=[CRAWLED_PAGES_ASSET],
    # A killed crawl run is retried (it resumes from its JOBDIR), but a crawl that failed on
    # its own (the start URLs failed) is not: retrying a site that is down only delays the
    # error `rag run` reports.
    tags={LANE_TAG: LANE_CRAWL, "dagster/retry_on_asset_or_op_failure": "false"},
    description="Crawl the site with Scrapy; item files appear in data/raw as pages arrive.",
)

# Pruning deletes partitions, so it shares the ingest lane: it never runs beside an ingestion
# run whose partition range would shift under it.
prune_job = dg.define_asset_job(
    PRUNE_JOB,
    selection=[REMOVED_PAGES_ASSET],
    # A failed prune is not retried at once by the daemon: the sensor backs off and asks again
    # (sensors/raw_item_files.py), and ingestion goes on meanwhile.
    tags={LANE_TAG: LANE_INGEST, "dagster/retry_on_asset_or_op_failure": "false"},
    description="Remove pages that are gone from the site (PRUNE_REMOVED=true).",
)
