"""Item pipeline that streams every page to its own atomically written item file."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from itemadapter import ItemAdapter

from rag_core.extraction import page_content_hash
from rag_core.ids import item_key
from rag_core.items import (
    CrawledItem,
    ItemFileError,
    item_file_name,
    read_item_file,
    write_item_atomically,
)

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

    def __init__(
        self,
        raw_dir: Path,
        max_page_chars: int,
        stats: StatsCollector | None = None,
        seen_keys_file: Path | None = None,
    ):
        self.raw_dir = raw_dir
        self.max_page_chars = max_page_chars
        self.stats = stats
        self.seen_keys_file = seen_keys_file
        self._seen_handle = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StreamingStoragePipeline:
        """Build from the RAW_ITEMS_DIR and MAX_PAGE_CHARS settings."""
        settings = crawler.settings
        raw_dir = Path(settings.get("RAW_ITEMS_DIR") or DEFAULT_RAW_ITEMS_DIR)
        max_chars = settings.getint("MAX_PAGE_CHARS", DEFAULT_MAX_PAGE_CHARS)
        seen = settings.get("SEEN_KEYS_FILE")
        return cls(raw_dir, max_chars, crawler.stats, Path(seen) if seen else None)

    def open_spider(self) -> None:
        """Create the output folder up front so a bad path fails the crawl immediately."""
        self.raw_dir.mkdir(parents=True, exist_ok=True)
        logger.info("Writing item files to %s", self.raw_dir.resolve())
        if self.seen_keys_file is not None:
            self.seen_keys_file.parent.mkdir(parents=True, exist_ok=True)
            # Appended per page, so a crawl resumed from its JOBDIR keeps the first part's keys.
            self._seen_handle = open(self.seen_keys_file, "a", encoding="utf-8")  # noqa: SIM115

    def close_spider(self) -> None:
        """Close the seen-keys file."""
        if self._seen_handle is not None:
            self._seen_handle.close()
            self._seen_handle = None

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
        self._record_seen(record.item_id)
        unchanged, record = self._compare_with_stored(record)
        if unchanged:
            # Same main text as the stored file: leave the file (and its mtime) alone, so the
            # sensor sees nothing new and no downstream work happens for this page.
            self._inc("rag/items_unchanged")
            return item
        # Synchronous on purpose: the file exists before item_scraped fires, and one small
        # write per page is cheap next to the download that produced it.
        write_item_atomically(record, self.raw_dir)
        self._inc("rag/items_saved")
        return item

    def _compare_with_stored(self, record: CrawledItem) -> tuple[bool, CrawledItem]:
        """Whether a stored file of the same page has the same main text (only on re-fetches:
        a first fetch pays no extraction here)."""
        path = self.raw_dir / item_file_name(record.item_id)
        if not path.exists():
            return False, record
        try:
            stored = read_item_file(path)
        except ItemFileError:
            return False, record  # a broken stored file is simply replaced
        new_hash = page_content_hash(record.html)
        old_hash = stored.content_hash or page_content_hash(stored.html)
        # Title and links matter downstream too (documents.title, the graph's LINKS_TO).
        same = (new_hash, record.title, record.links, record.url) == (
            old_hash,
            stored.title,
            stored.links,
            stored.url,
        )
        return same, replace(record, content_hash=new_hash)

    def _record_seen(self, key: str) -> None:
        if self._seen_handle is not None:
            self._seen_handle.write(key + "\n")
            self._seen_handle.flush()

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
