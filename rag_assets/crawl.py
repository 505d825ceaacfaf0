"""The crawl: Scrapy fetches the site and saves every page at once as an item file."""

import time
from typing import Optional

import dagster as dg

from rag_assets.jobs import crawl_job
from rag_core import prune
from rag_core.redact import mask_secrets
from rag_core.rekey import rekey_item_files
from rag_core.settings import Settings
from resources.raw_items import RawItemStore
from resources.scrapy_crawler import ScrapyCrawler


class CrawlConfig(dg.Config):
    """Per-run overrides of the crawl (empty = the values from the environment)."""

    start_urls: list[str] = []
    max_pages: Optional[int] = None  # noqa: UP045 - Dagster config needs typing.Optional


@dg.asset(
    group_name="crawl",
    kinds={"scrapy", "json"},
    description=(
        "Pages of the site, fetched by Scrapy (robots.txt obeyed, retries, optional "
        "AutoThrottle) and saved one file per page in data/raw as they arrive; the "
        "raw_item_files sensor turns each new file into an `items` partition."
    ),
)
def crawled_pages(
    context: dg.AssetExecutionContext,
    config: CrawlConfig,
    crawler: ScrapyCrawler,
    raw_store: RawItemStore,
) -> dg.MaterializeResult:
    """Crawled pages of the site, as item files in data/raw."""
    started = time.monotonic()
    # A folder of the first key scheme is re-keyed first, or the crawl would save every page
    # a second time under its readable key (rag run / rag dev do this at start as well).
    for line in rekey_item_files(raw_store.folder).lines():
        context.log.warning(line)
    stats = crawler.crawl(
        context.log.info, start_urls=config.start_urls or None, max_pages=config.max_pages
    )
    gone = stats.get("gone_urls") or []
    start_failures = stats.get("start_failures") or {}
    evidence = prune.CrawlEvidence.from_stats(stats, crawler.seen_keys())
    stored = {key for key, _ in raw_store.scan()}
    complete = evidence.complete(stored)
    removals: dict[str, str] = {}
    refusal = None
    if crawler.prune_removed:
        folder = raw_store.folder
        plan = prune.plan_prune(
            stored,
            evidence,
            prune.read_misses(folder),
            after_misses=crawler.prune_after_misses,
            max_fraction=crawler.prune_max_fraction,
            confirmed=crawler.prune_confirm,
        )
        # A page reached again is not removed, even if an earlier crawl asked for it.
        prune.withdraw_removals(folder, evidence.seen)
        prune.add_removals(folder, plan.removals)
        prune.write_misses(folder, plan.misses)
        prune.write_refusal(folder, plan.refused)
        removals, refusal = plan.removals, plan.refused
        if refusal:
            context.log.error(prune.describe_refusal(refusal))
        elif removals:
            context.log.info(f"{len(removals)} page(s) gone from the site; removal requested")
        if not complete:
            context.log.warning(
                "incomplete crawl (a start URL or a stored page failed, or it did not run to "
                "the end): pages it did not reach are kept"
            )
    if start_failures:
        # Fails the run (not retried: the crawl job's tags), so `rag run` exits non-zero.
        raise dg.Failure(
            description="the crawl's start URL(s) failed: "
            + "; ".join(f"{url} ({why})" for url, why in start_failures.items()),
            metadata={"start_failures": dg.MetadataValue.json(start_failures)},
        )
    return dg.MaterializeResult(
        metadata={
            "start_urls": ", ".join(stats.get("start_urls", [])),
            "items_saved": dg.MetadataValue.int(int(stats.get("items_saved", 0))),
            "pages_crawled": dg.MetadataValue.int(int(stats.get("pages_crawled", 0))),
            "gone_urls": dg.MetadataValue.int(len(gone)),
            "items_unchanged": dg.MetadataValue.int(int(stats.get("items_unchanged", 0))),
            "complete_crawl": complete,
            "failed_requests": dg.MetadataValue.int(len(evidence.failed_urls)),
            "prune_refused": prune.describe_refusal(refusal) if refusal else "no",
            "resumed": bool(stats.get("resumed")),
            "removals_requested": dg.MetadataValue.int(len(removals)),
            "finish_reason": str(stats.get("finish_reason", "")),
            "elapsed_s": dg.MetadataValue.float(round(time.monotonic() - started, 2)),
            "raw_dir": dg.MetadataValue.path(crawler.raw_dir),
            "scrapy_stats": dg.MetadataValue.json(
                {k: v for k, v in stats.items() if not isinstance(v, list | dict)}
            ),
        }
    )


def crawl_definitions(settings: Settings) -> dg.Definitions:
    """The crawl area: the crawl asset, its job and the Scrapy resource."""
    crawler = ScrapyCrawler(
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
    )
    return dg.Definitions(assets=[crawled_pages], jobs=[crawl_job], resources={"crawler": crawler})
