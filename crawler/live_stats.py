"""Scrapy extension: write the crawl's statistics to its stats file every few seconds.

The metrics endpoint reads this file for the crawl in progress (pages by status, errors,
refusals); at the end ``python -m crawler`` overwrites it with the final statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import NotConfigured
from twisted.internet import task

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

INTERVAL_S = 2.0


class LiveStats:
    """Dump ``crawler.stats`` to LIVE_STATS_FILE while the spider runs."""

    def __init__(self, crawler: Crawler, path: Path):
        self.crawler = crawler
        self.path = path
        self.loop = task.LoopingCall(self.write)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> LiveStats:
        path = crawler.settings.get("LIVE_STATS_FILE")
        if not path:
            raise NotConfigured("no LIVE_STATS_FILE")
        extension = cls(crawler, Path(path))
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self, spider: Any = None) -> None:
        self.loop.start(INTERVAL_S, now=True)

    def spider_closed(self, spider: Any = None, reason: str = "") -> None:
        if self.loop.running:
            self.loop.stop()

    def write(self) -> None:
        from crawler.__main__ import summarise, write_stats_file

        stats = dict(self.crawler.stats.get_stats())
        try:
            write_stats_file(self.path, {**summarise(stats, 0.0), "live": True})
        except OSError:
            pass  # a full or read-only disk must not stop the crawl; the final write reports it
