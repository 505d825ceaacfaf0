"""The code location: assembles assets, jobs, the sensor and resources from the settings."""

from __future__ import annotations

import functools

import dagster as dg

from rag_assets.checks import embedding_checks
from rag_assets.crawl import crawled_pages
from rag_assets.distributed import ingest_executor
from rag_assets.graph import graph_pages
from rag_assets.ingest import chunks, documents, embeddings, raw_items
from rag_assets.jobs import build_ingest_job, crawl_job, graph_catch_up_job, prune_job
from rag_assets.prune import build_removed_pages
from rag_core.fingerprint import settings_fingerprint
from rag_core.redact import mask_secrets
from rag_core.settings import Settings, load_settings
from resources.chunker import TokenChunker
from resources.duckdb_store import DuckDBStore
from resources.embedder import SentenceTransformerEmbedder
from resources.graph_sink import Neo4jGraphSink
from resources.raw_items import RawItemStore
from resources.scrapy_crawler import ScrapyCrawler
from sensors.graph_catch_up import graph_catch_up
from sensors.raw_item_files import build_raw_item_files_sensor


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The resources of every asset, configured from the validated settings."""
    return {
        "raw_store": RawItemStore(raw_dir=str(settings.raw_dir)),
        "duckdb": DuckDBStore(path=str(settings.duckdb_path)),
        "chunker": TokenChunker(
            model=settings.embedding_model,
            chunk_size_tokens=settings.chunk_size_tokens,
            chunk_overlap_tokens=settings.chunk_overlap_tokens,
            context_header=settings.chunk_context_header,
            min_tokens=settings.chunk_min_tokens,
        ),
        "embedder": SentenceTransformerEmbedder.from_settings(settings),
        "crawler": ScrapyCrawler(
            raw_dir=str(settings.raw_dir),
            state_dir=str(settings.crawl_state_dir),
            # Masked: resource config is stored in snapshots and shown in the UI.
            start_urls=[mask_secrets(url) for url in settings.start_urls],
            allowed_domains=list(settings.allowed_domains),
            max_pages=settings.closespider_pagecount,
            depth_limit=settings.crawl_depth_limit,
            include=list(settings.crawl_include),
            exclude=list(settings.crawl_exclude),
            concurrency=settings.crawl_concurrency,
            autothrottle=settings.autothrottle_enabled,
            max_page_chars=settings.max_page_chars,
            log_level=settings.log_level,
            demo_site_port=settings.demo_site_port,
            prune_removed=settings.prune_removed,
            allow_private_networks=settings.allow_private_networks,
            max_download_bytes=settings.crawl_max_download_bytes,
            max_links_per_page=settings.crawl_max_links_per_page,
            max_url_length=settings.crawl_max_url_length,
            prune_after_misses=settings.prune_after_misses,
            prune_max_fraction=settings.prune_max_fraction,
            prune_confirm=settings.prune_confirm,
            priority_rules=settings.priority_rules,
            sitemaps=settings.crawl_sitemaps,
            # Batch mode ingests only after the crawl: pausing the crawl would wait forever.
            max_pending_items=(
                settings.max_pending_items if settings.pipeline_mode == "streaming" else 0
            ),
            dagster_home=str(settings.dagster_home),
        ),
    }


def build_graph_resource(settings: Settings) -> Neo4jGraphSink:
    """The graph sink; the password is read from NEO4J_PASSWORD when a run or tick needs it."""
    return Neo4jGraphSink(
        uri=settings.neo4j_uri,
        user=settings.neo4j_user,
        password=dg.EnvVar("NEO4J_PASSWORD"),
        database=settings.neo4j_database,
    )


def build_definitions(settings: Settings) -> dg.Definitions:
    """Definitions for ``settings`` (tests build them for a temporary data folder)."""
    graph = settings.use_neo4j  # the graph sink is optional: nothing of it exists without it
    ingest_job = build_ingest_job(with_graph=graph, executor_def=ingest_executor(settings))
    return dg.Definitions(
        assets=[crawled_pages, build_removed_pages(graph), raw_items, documents, chunks, embeddings]
        + ([graph_pages] if graph else []),
        asset_checks=embedding_checks,
        jobs=[crawl_job, ingest_job, prune_job] + ([graph_catch_up_job] if graph else []),
        sensors=[
            build_raw_item_files_sensor(
                settings.pipeline_mode,
                ingest_job,
                max_items=settings.max_batch_items,
                max_bytes=settings.max_batch_mb * 1024 * 1024,
                fingerprint=functools.partial(settings_fingerprint, settings),
                max_runs=settings.ingest_max_concurrent_runs,
            )
        ]
        + ([graph_catch_up] if graph else []),
        resources=build_resources(settings)
        | ({"graph": build_graph_resource(settings)} if graph else {}),
        # One process per run: torch and the model load once, all items share batches.
        executor=dg.in_process_executor,
    )


defs = build_definitions(load_settings())
