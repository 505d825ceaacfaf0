"""Item pipeline that streams every page to its own atomically written item file."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from itemadapter import ItemAdapter

from rag_core.ids import item_key
from rag_core.items import CrawledItem, write_item_atomically

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.statscollectors import StatsCollector

logger = logging.getLogger(__name__)

DEFAULT_RAW_ITEMS_DIR = "data/raw"
DEFAULT_MAX_PAGE_CHARS = 2_000_000


class StreamingStoragePipeline:
    """Write each item at once to ``<RAW_ITEMS_DIR>/item_<key>.json`` (temp file + rename).

    Writing per item (not at spider close) lets the Dagster sensor pick pages up while the
    crawl runs, and means a killed crawl loses at most the page being written.
    """

    def __init__(self, raw_dir: Path, max_page_chars: int, stats: StatsCollector | None = None):
        self.raw_dir = raw_dir
        self.max_page_chars = max_page_chars
        self.stats = stats

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StreamingStoragePipeline:
        """Build from the RAW_ITEMS_DIR and MAX_PAGE_CHARS settings."""
        settings = crawler.settings
        raw_dir = Path(settings.get("RAW_ITEMS_DIR") or DEFAULT_RAW_ITEMS_DIR)
        max_chars = settings.getint("MAX_PAGE_CHARS", DEFAULT_MAX_PAGE_CHARS)
        return cls(raw_dir, max_chars, crawler.stats)

    def open_spider(self) -> None:
        """Create the output folder up front so a bad path fails the crawl immediately."""
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        logger.info("Writing item files to %s", self.raw_dir.resolve())

    def process_item(self, item: Any) -> Any:
        """Persist ``item`` (truncating an oversized body) and pass it on unchanged."""
        record = self._to_record(item)
        # The key is recomputed from the final URL so file name and item_id can never disagree.
        record = replace(record, item_id=item_key(record.url))
        if self.max_page_chars > 0 and len(record.html) > self.max_page_chars:
            record = replace(record, html=record.html[: self.max_page_chars], truncated=True)
            self._inc("rag/items_truncated")
            logger.warning(
                "Truncated %s to %d characters (MAX_PAGE_CHARS)", record.url, self.max_page_chars
            )
        # Synchronous on purpose: the file exists before item_scraped fires, and one small
        # write per page is cheap next to the download that produced it.
        write_item_atomically(record, self.raw_dir)
        self._inc("rag/items_saved")
        return item

    @staticmethod
    def _to_record(item: Any) -> CrawledItem:
        if isinstance(item, CrawledItem):
            return item
        known = CrawledItem.__dataclass_fields__
        data = {k: v for k, v in ItemAdapter(item).asdict().items() if k in known}
        return CrawledItem(**data)

    def _inc(self, key: str) -> None:
        if self.stats is not None:
            self.stats.inc_value(key)
