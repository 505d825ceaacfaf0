"""The crawl: Scrapy fetches the site and saves every page at once as an item file."""

import time
from typing import Optional

import dagster as dg

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
    context: dg.AssetExecutionContext, config: CrawlConfig, crawler: ScrapyCrawler
) -> dg.MaterializeResult:
    """Crawled pages of the site, as item files in data/raw."""
    started = time.monotonic()
    stats = crawler.crawl(
        context.log.info, start_urls=config.start_urls or None, max_pages=config.max_pages
    )
    gone = stats.get("gone_urls") or []
    return dg.MaterializeResult(
        metadata={
            "start_urls": ", ".join(stats.get("start_urls", [])),
            "items_saved": dg.MetadataValue.int(int(stats.get("items_saved", 0))),
            "pages_crawled": dg.MetadataValue.int(int(stats.get("pages_crawled", 0))),
            "gone_urls": dg.MetadataValue.int(len(gone)),
            "finish_reason": str(stats.get("finish_reason", "")),
            "elapsed_s": dg.MetadataValue.float(round(time.monotonic() - started, 2)),
            "raw_dir": dg.MetadataValue.path(crawler.raw_dir),
            "scrapy_stats": dg.MetadataValue.json(
                {k: v for k, v in stats.items() if not isinstance(v, list | dict)}
            ),
        }
    )
