"""The code location: the areas (crawl, ingestion, pruning, graph) each build their own
``dg.Definitions``; this root merges them with the shared resources and the sensors. The
graph area is loaded only with USE_NEO4J: nothing of it exists without it.

The root is the one module that imports the sensors (which import the asset modules):
tests/test_architecture.py treats it as its own node above them.
"""

from __future__ import annotations

import functools

import dagster as dg

from rag_assets.crawl import crawl_definitions
from rag_assets.distributed import ingest_executor
from rag_assets.graph import graph_definitions
from rag_assets.ingest import ingest_definitions
from rag_assets.jobs import build_ingest_job, ingest_job
from rag_assets.prune import prune_definitions
from rag_core.fingerprint import settings_fingerprint
from rag_core.settings import Settings, load_settings
from resources.duckdb_store import DuckDBStore
from resources.raw_items import RawItemStore
from sensors.graph_catch_up import graph_catch_up
from sensors.raw_item_files import build_raw_item_files_sensor


def shared_definitions(settings: Settings) -> dg.Definitions:
    """What several areas use: the item folder, the DuckDB store and the executor (one object
    each: merged definitions must not hold two resources under one key)."""
    return dg.Definitions(
        resources={
            "raw_store": RawItemStore(raw_dir=str(settings.raw_dir)),
            "duckdb": DuckDBStore(path=str(settings.duckdb_path)),
        },
        # One process per run: torch and the model load once, all items share batches.
        executor=dg.in_process_executor,
    )


def build_definitions(settings: Settings) -> dg.Definitions:
    """Definitions for ``settings`` (tests build them for a temporary data folder)."""
    # In process unless DEPLOYMENT=distributed, whose ingestion steps run on Celery workers.
    executor = ingest_executor(settings)
    job = ingest_job if executor is None else build_ingest_job(executor)
    sensor = build_raw_item_files_sensor(
        settings.pipeline_mode,
        max_items=settings.max_batch_items,
        max_bytes=settings.max_batch_mb * 1024 * 1024,
        fingerprint=functools.partial(settings_fingerprint, settings),
        max_runs=settings.ingest_max_concurrent_runs,
        job=job,
    )
    parts = [
        shared_definitions(settings),
        crawl_definitions(settings),
        ingest_definitions(settings, job),
        prune_definitions(settings),
        dg.Definitions(sensors=[sensor]),
    ]
    if settings.use_neo4j:
        parts += [graph_definitions(settings), dg.Definitions(sensors=[graph_catch_up])]
    return dg.Definitions.merge(*parts)


defs = build_definitions(load_settings())
