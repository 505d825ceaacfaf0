"""Jobs: the crawl, and the item ingestion chain that the sensor launches in micro-batches."""

from typing import TYPE_CHECKING

import dagster as dg

from rag_assets.crawl import crawled_pages
from rag_assets.graph import graph_pages
from rag_assets.ingest import chunks, documents, embeddings, raw_items
from rag_assets.partitions import items_partitions

if TYPE_CHECKING:  # the class is not exported by dagster; define_asset_job returns it
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )

INGEST_JOB_NAME = "ingest_items"
CRAWL_JOB_NAME = "crawl_site"
GRAPH_CATCH_UP_JOB_NAME = "graph_catch_up"
PRUNE_JOB_NAME = "prune_removed_pages"
# The run queue limits runs by this tag (dagster.yaml): one ingestion run at a time,
# because DuckDB has one writer and one run already uses every core for embedding.
LANE_TAG = "rag/lane"


def build_ingest_job(
    with_graph: bool = False, executor_def: dg.ExecutorDefinition | None = None
) -> "UnresolvedAssetJobDefinition":
    """The ingestion job the sensor launches; with the graph sink it ends with graph_pages.
    ``executor_def`` overrides the definitions' in-process executor (DEPLOYMENT=distributed:
    rag_assets/distributed.py)."""
    selection = [raw_items, documents, chunks, embeddings] + ([graph_pages] if with_graph else [])
    return dg.define_asset_job(
        INGEST_JOB_NAME,
        selection=selection,
        partitions_def=items_partitions,
        tags={LANE_TAG: "ingest"},
        executor_def=executor_def,
        description="raw_items -> documents -> chunks -> embeddings"
        + (" -> graph_pages" if with_graph else "")
        + " for a batch of item partitions, in one process (torch and the model load once "
        "per run).",
    )


ingest_job = build_ingest_job(with_graph=False)

# Writes missed partitions to the graph after an outage. It shares the ingest lane, so it never
# runs beside an ingestion run (both would write the same pages) and the sensor waits for it.
graph_catch_up_job = dg.define_asset_job(
    GRAPH_CATCH_UP_JOB_NAME,
    selection=[graph_pages],
    partitions_def=items_partitions,
    tags={LANE_TAG: "ingest"},
    description="graph_pages for item partitions whose embeddings are newer than their graph "
    "write (launched by the graph_catch_up sensor).",
)

crawl_job = dg.define_asset_job(
    CRAWL_JOB_NAME,
    selection=[crawled_pages],
    # A killed crawl run is retried (it resumes from its JOBDIR), but a crawl that failed on
    # its own (the start URLs failed) is not: retrying a site that is down only delays the
    # error `rag run` reports.
    tags={LANE_TAG: "crawl", "dagster/retry_on_asset_or_op_failure": "false"},
    description="Crawl the site with Scrapy; item files appear in data/raw as pages arrive.",
)

# Pruning deletes partitions, so it shares the ingest lane: it never runs beside an ingestion
# run whose partition range would shift under it.
prune_job = dg.define_asset_job(
    PRUNE_JOB_NAME,
    selection=["removed_pages"],
    # A failed prune is not retried at once by the daemon: the sensor backs off and asks again
    # (sensors/raw_item_files.py), and ingestion goes on meanwhile.
    tags={LANE_TAG: "ingest", "dagster/retry_on_asset_or_op_failure": "false"},
    description="Remove pages that are gone from the site (PRUNE_REMOVED=true).",
)
