"""Every name the parts of the platform share: jobs, tags, partitions, asset keys, metadata.

The runner, status, metrics, sensors, assets and tests import these instead of spelling the
strings, so a rename is one edit here. Plain strings (no Dagster import: this is rag_core);
Dagster code wraps them, e.g. ``dg.AssetKey(EMBEDDINGS_ASSET)``,
``dg.DagsterRunStatus(status) for status in IN_FLIGHT_STATUSES``.
"""

from __future__ import annotations

# Jobs (rag_assets/jobs.py defines them).
CRAWL_JOB = "crawl_site"
INGEST_JOB = "ingest_items"
PRUNE_JOB = "prune_removed_pages"
GRAPH_CATCH_UP_JOB = "graph_catch_up"
# The ingestion job's one step: the multi-asset that streams a batch through raw_items,
# documents, chunks and embeddings (rag_assets/ingest.py).
INGEST_STEP = "ingest_batch"

# Sensors.
RAW_ITEM_FILES_SENSOR = "raw_item_files"
GRAPH_CATCH_UP_SENSOR = "graph_catch_up"

# The one dynamic partitions definition: one partition per crawled page (its item key).
ITEMS_PARTITIONS = "items"

# Asset keys.
CRAWLED_PAGES_ASSET = "crawled_pages"
RAW_ITEMS_ASSET = "raw_items"
DOCUMENTS_ASSET = "documents"
CHUNKS_ASSET = "chunks"
# An item is ingested when this asset is materialised for its partition (the runner's
# progress, `rag status`, the crawl's backpressure and the graph catch-up all read it).
EMBEDDINGS_ASSET = "embeddings"
GRAPH_PAGES_ASSET = "graph_pages"
REMOVED_PAGES_ASSET = "removed_pages"

# Run tags.
# The run queue limits runs by this tag (dagster.yaml): one ingestion run at a time, because
# DuckDB has one writer and one run already uses every core for embedding.
LANE_TAG = "rag/lane"
LANE_INGEST = "ingest"
LANE_CRAWL = "crawl"
MANIFEST_TAG = "rag/manifest"  # the batch manifest file of an ingestion run (rag_core/batches)
BATCH_TAG = "rag/batch"  # the sensor's batch counter
BATCH_ITEMS_TAG = "rag/batch_items"  # how many partitions an ingestion run covers
REMOVALS_TAG = "rag/removals"  # how many pages a prune run removes

# Materialisation metadata keys read back by the runner, the metrics exporter, tests, benches.
ITEMS_METADATA = "items"  # partitions a materialisation covered
EMBEDDED_METADATA = "embedded"  # chunk vectors computed by an embeddings materialisation
REUSED_METADATA = "reused"  # chunk vectors kept because their text did not change
FIRST_STORED_AT_METADATA = "first_stored_at"  # epoch s when a run's first vector was committed

# Run statuses (DagsterRunStatus names) of a run that is queued or running: the sensor waits
# for them, the runner fails them when their session died, status and metrics count them.
IN_FLIGHT_STATUSES = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
