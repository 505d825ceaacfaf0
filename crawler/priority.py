"""Important pages first: Scrapy request priority from PRIORITY_RULES and sitemap <priority>.

``PriorityMiddleware`` (a spider middleware) gives every request the priority of its URL
(``rag_core.priority.page_priority``), so Scrapy's priority queue (kept in JOBDIR too)
downloads high-priority pages first. With ``SITEMAP_PRIORITIES`` it first reads
``/sitemap.xml`` of each start URL's site: its pages are scheduled with their ``<priority>``,
and a link to one of them found later keeps that priority.

``PriorityRecorder`` (an item pipeline after the storage pipeline) appends the priority of
each saved page to the priority log beside the item files, where the sensor reads it to
order waiting items into runs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import scrapy
from scrapy.exceptions import NotConfigured
from scrapy.utils.sitemap import Sitemap

from rag_core import priority
from rag_core.ids import canonical_url, item_key

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

STAT_SITEMAP_URLS = "rag/sitemap_urls"
STAT_SITEMAP_RESPONSES = "rag/sitemap_responses"
STAT_PRIORITISED = "rag/requests_prioritised"


class PriorityPlan:
    """Rules and sitemap priorities of one crawl, shared by the middleware and the pipeline."""

    def __init__(self, rules: tuple[priority.Rule, ...], sitemaps: bool):
        self.rules = rules
        self.sitemaps = sitemaps
        self.from_sitemap: dict[str, int] = {}  # canonical URL -> sitemap priority

    @classmethod
    def of(cls, crawler: Crawler) -> PriorityPlan:
        plan = getattr(crawler, "_rag_priority_plan", None)
        if plan is None:
            settings = crawler.settings
            plan = cls(
                priority.parse_rules(settings.get("PRIORITY_RULES") or ""),
                settings.getbool("SITEMAP_PRIORITIES"),
            )
            crawler._rag_priority_plan = plan  # type: ignore[attr-defined]
        return plan

    @property
    def active(self) -> bool:
        return bool(self.rules) or self.sitemaps

    def of_url(self, url: str) -> int:
        canon = canonical_url(url)
        return priority.page_priority(self.rules, canon, self.from_sitemap.get(canon))


class PriorityMiddleware:
    """Spider middleware: request priority from the plan; sitemap pages scheduled first."""

    def __init__(self, crawler: Crawler, plan: PriorityPlan):
        self.crawler = crawler
        self.plan = plan

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PriorityMiddleware:
        plan = PriorityPlan.of(crawler)
        if not plan.active:
            raise NotConfigured("no PRIORITY_RULES and no sitemap")
        return cls(crawler, plan)

    def _prioritise(self, request: Any) -> Any:
        if not isinstance(request, scrapy.Request):
            return request
        wanted = self.plan.of_url(request.url)
        if wanted and request.priority != wanted:
            self.crawler.stats.inc_value(STAT_PRIORITISED)
            return request.replace(priority=wanted)
        return request

    async def process_start(self, start: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Sitemap pages first (when enabled), then the spider's start requests."""
        if self.plan.sitemaps:
            for request in await self._sitemap_requests():
                yield request
        async for request in start:
            yield self._prioritise(request)

    def process_spider_output(self, response: Any, result: Any) -> Any:
        for entry in result:
            yield self._prioritise(entry)

    async def process_spider_output_async(self, response: Any, result: Any) -> Any:
        async for entry in result:
            yield self._prioritise(entry)

    async def _sitemap_requests(self) -> list[scrapy.Request]:
        spider = self.crawler.spider
        origins = dict.fromkeys(
            f"{p.scheme}://{p.netloc}" for p in map(urlsplit, getattr(spider, "start_urls", []))
        )
        requests = []
        for origin in origins:
            url = f"{origin}/sitemap.xml"
            try:
                response = await self.crawler.engine.download_async(
                    scrapy.Request(url, dont_filter=True)
                )
            except Exception as exc:  # no sitemap is normal; the crawl goes on from links
                logger.info("No sitemap at %s (%s)", url, exc)
                continue
            self.crawler.stats.inc_value(STAT_SITEMAP_RESPONSES)
            if response.status != 200:
                logger.info("No sitemap at %s (HTTP %d)", url, response.status)
                continue
            try:
                entries = list(Sitemap(response.body))
            except Exception as exc:  # malformed XML: say so, crawl on from the links
                logger.warning("Unreadable sitemap %s: %s", url, exc)
                continue
            for entry in entries:
                loc = (entry.get("loc") or "").strip()
                if not loc.startswith(("http://", "https://")):
                    continue
                from_map = priority.sitemap_priority(entry.get("priority"))
                if from_map is not None:
                    self.plan.from_sitemap[canonical_url(loc)] = from_map
                requests.append(
                    scrapy.Request(
                        loc,
                        callback=spider.parse,
                        errback=getattr(spider, "on_error", None),
                        priority=self.plan.of_url(loc),
                    )
                )
            self.crawler.stats.inc_value(STAT_SITEMAP_URLS, len(entries))
            logger.info("Sitemap %s: %d page(s)", url, len(entries))
        return requests


class PriorityRecorder:
    """Item pipeline: record each saved page's priority for the sensor (non-zero ones, and a
    0 for a page whose recorded priority changed back to 0)."""

    def __init__(self, plan: PriorityPlan, raw_dir: Path):
        self.plan = plan
        self.raw_dir = raw_dir
        self.recorded: dict[str, int] = {}

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PriorityRecorder:
        return cls(
            PriorityPlan.of(crawler), Path(crawler.settings.get("RAW_ITEMS_DIR") or "data/raw")
        )

    def open_spider(self) -> None:
        self.recorded = priority.read_priorities(self.raw_dir)

    def process_item(self, item: Any) -> Any:
        url = item.get("url") if hasattr(item, "get") else getattr(item, "url", None)
        if not url:
            return item
        key = item_key(url)
        value = self.plan.of_url(url)
        if self.recorded.get(key, 0) != value:
            priority.append_priority(self.raw_dir, key, value)
            self.recorded[key] = value
        return item
