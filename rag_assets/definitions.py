"""The code location: assembles assets, jobs, the sensor and resources from the settings."""

from __future__ import annotations

import dagster as dg

from rag_assets.checks import embedding_checks
from rag_assets.crawl import crawled_pages
from rag_assets.ingest import chunks, documents, embeddings, raw_items
from rag_assets.jobs import crawl_job, ingest_job
from rag_core.settings import Settings, load_settings
from resources.chunker import TokenChunker
from resources.duckdb_store import DuckDBStore
from resources.embedder import SentenceTransformerEmbedder
from resources.raw_items import RawItemStore
from resources.scrapy_crawler import ScrapyCrawler
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
        ),
        "embedder": SentenceTransformerEmbedder(
            provider=settings.embedding_provider,
            model=settings.embedding_model,
            dtype=settings.embedding_dtype,
            batch_size=settings.embedding_batch_size,
            torch_threads=settings.torch_num_threads,
            server_url=settings.embedding_server_url,
        ),
        "crawler": ScrapyCrawler(
            raw_dir=str(settings.raw_dir),
            state_dir=str(settings.crawl_state_dir),
            start_urls=list(settings.start_urls),
            allowed_domains=list(settings.allowed_domains),
            max_pages=settings.closespider_pagecount,
            depth_limit=settings.crawl_depth_limit,
            include=list(settings.crawl_include),
            exclude=list(settings.crawl_exclude),
            concurrency=settings.crawl_concurrency,
            autothrottle=settings.crawl_autothrottle,
            max_page_chars=settings.max_page_chars,
            log_level=settings.log_level,
            demo_site_port=settings.demo_site_port,
        ),
    }


def build_definitions(settings: Settings) -> dg.Definitions:
    """Definitions for ``settings`` (tests build them for a temporary data folder)."""
    return dg.Definitions(
        assets=[crawled_pages, raw_items, documents, chunks, embeddings],
        asset_checks=embedding_checks,
        jobs=[crawl_job, ingest_job],
        sensors=[build_raw_item_files_sensor(settings.pipeline_mode)],
        resources=build_resources(settings),
        # One process per run: torch and the model load once, all items share batches.
        executor=dg.in_process_executor,
    )


defs = build_definitions(load_settings())
