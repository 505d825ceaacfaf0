"""Jobs: the crawl, and the item ingestion chain that the sensor launches in micro-batches."""

import dagster as dg

from rag_assets.crawl import crawled_pages
from rag_assets.ingest import chunks, documents, embeddings, raw_items
from rag_assets.partitions import items_partitions

INGEST_JOB_NAME = "ingest_items"
CRAWL_JOB_NAME = "crawl_site"
# The run queue limits runs by this tag (dagster.yaml): one ingestion run at a time,
# because DuckDB has one writer and one run already uses every core for embedding.
LANE_TAG = "rag/lane"

ingest_job = dg.define_asset_job(
    INGEST_JOB_NAME,
    selection=[raw_items, documents, chunks, embeddings],
    partitions_def=items_partitions,
    tags={LANE_TAG: "ingest"},
    description="raw_items -> documents -> chunks -> embeddings for a batch of item partitions, "
    "in one process (torch and the model load once per run).",
)

crawl_job = dg.define_asset_job(
    CRAWL_JOB_NAME,
    selection=[crawled_pages],
    tags={LANE_TAG: "crawl"},
    description="Crawl the site with Scrapy; item files appear in data/raw as pages arrive.",
)
