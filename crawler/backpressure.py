"""Backpressure: the crawl pauses while too many of its item files wait for ingestion.

Without it a crawl of a site far larger than the model can embed fills the disk with item
files and the Dagster instance with waiting partitions. The ``Backpressure`` extension counts
the item files this crawl wrote whose ingestion has not finished yet (an ``embeddings``
materialisation of their partition after the crawl started: an item that failed is recorded
in ``ingest_errors`` and materialised too, so failures do not hold the crawl). When that
number, plus the requests being downloaded or parsed (each may still become an item file),
reaches ``MAX_PENDING_ITEMS`` it pauses the engine: those requests finish, nothing new is
sent, and the spider is not closed as idle. It unpauses once the waiting files are one crawl
batch (CONCURRENT_REQUESTS) below the bound, since the engine then sends a whole batch at
once. So the waiting files stay at or near the bound, never a crawl batch above it.

Cheap: the written keys are kept in memory (a page counts when its item file's mtime is
after the crawl's start: one ``stat`` per item); the Dagster instance is asked only when the
count reaches the bound, and then only for materialisations newer than the last answer (one
indexed query with a cursor). Not the storage pipeline's ``rag/items_saved`` stat: items
go through the pipelines concurrently, so one signal can see two increments.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.exceptions import NotConfigured
from twisted.internet import task

from rag_core.constants import EMBEDDINGS_ASSET
from rag_core.ids import item_key
from rag_core.items import item_file_name

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

STAT_PAUSES = "rag/backpressure_pauses"
STAT_PAUSED_S = "rag/backpressure_paused_seconds"
STAT_MAX_WAITING = "rag/backpressure_max_waiting"
POLL_S = 1.0
MTIME_CLOCK_SLACK_NS = 50_000_000


class IngestedSince:
    """Keys whose ``embeddings`` were materialised after ``since`` (epoch s), read from the
    Dagster instance at ``dagster_home`` incrementally."""

    def __init__(self, dagster_home: str, since: float):
        import dagster as dg

        # As rag_app.instance.open_instance does (the crawler may import only rag_core):
        # dagster.yaml keeps its storage under $DAGSTER_HOME.
        os.environ["DAGSTER_HOME"] = str(dagster_home)
        self.instance = dg.DagsterInstance.from_config(str(dagster_home))
        self.since = since
        self.cursor: str | None = None
        self.keys: set[str] = set()

    def refresh(self) -> set[str]:
        import dagster as dg

        while True:
            result = self.instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey(EMBEDDINGS_ASSET), after_timestamp=self.since
                ),
                limit=1000,
                cursor=self.cursor,
                ascending=True,
            )
            self.keys.update(r.partition_key for r in result.records if r.partition_key)
            if result.cursor:
                self.cursor = result.cursor
            if not result.has_more:
                return self.keys

    def close(self) -> None:
        self.instance.dispose()


class Backpressure:
    """Scrapy extension: pause the engine while ``MAX_PENDING_ITEMS`` item files wait."""

    def __init__(self, crawler: Crawler, max_pending: int, ingested: Any, raw_dir: Path):
        self.crawler = crawler
        self.max_pending = max_pending
        # Resume one crawl batch below the bound: on unpause the engine sends up to
        # CONCURRENT_REQUESTS requests at once, before any of them is counted (resuming just
        # below the bound overshot it by a whole batch in the e2e test and the demo run).
        batch = crawler.settings.getint("CONCURRENT_REQUESTS", 16)
        self.resume_at = max(0, max_pending - batch)
        self.ingested = ingested  # .refresh() -> set of ingested keys
        self.raw_dir = raw_dir
        # File mtimes come from the kernel's coarse clock, up to a tick (1-10 ms) behind
        # time.time_ns(): a file written just after this moment may carry an mtime just before
        # it. The slack keeps such a file counted (a page left from an earlier crawl is far
        # older: a crawl fetches before it writes).
        self.started_ns = time.time_ns() - MTIME_CLOCK_SLACK_NS
        self.written: set[str] = set()
        self.done: set[str] = set()
        self.paused_at: float | None = None
        self.poll = task.LoopingCall(self._poll)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Backpressure:
        """Enabled by MAX_PENDING_ITEMS > 0 and BACKPRESSURE_DAGSTER_HOME (the instance whose
        ingestion runs the crawl feeds)."""
        settings = crawler.settings
        max_pending = settings.getint("MAX_PENDING_ITEMS", 0)
        home = settings.get("BACKPRESSURE_DAGSTER_HOME")
        if max_pending <= 0 or not home:
            raise NotConfigured("backpressure off (MAX_PENDING_ITEMS=0 or no Dagster instance)")
        raw_dir = Path(settings.get("RAW_ITEMS_DIR") or "data/raw")
        extension = cls(crawler, max_pending, IngestedSince(home, time.time()), raw_dir)
        crawler.signals.connect(extension.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    @property
    def waiting(self) -> int:
        return len(self.written - self.done)

    def item_scraped(self, item: Any, response: Any = None, spider: Any = None) -> None:
        """Count the item if the storage pipeline wrote a file for it; pause at the bound."""
        url = item.get("url") if hasattr(item, "get") else getattr(item, "url", None)
        if not url:
            return
        key = item_key(url)
        try:
            mtime_ns = (self.raw_dir / item_file_name(key)).stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime_ns < self.started_ns:
            return  # unchanged page: its file was not rewritten, nothing for ingestion to do
        self.written.add(key)
        self._track_max()
        if self.paused_at is None and self.waiting + self._in_flight() >= self.max_pending:
            self.done = set(self.ingested.refresh())
            if self.waiting + self._in_flight() >= self.max_pending:
                self._pause()

    def _in_flight(self) -> int:
        """Requests being downloaded or parsed: each may become one more item file after
        the pause, so they count against the bound (the e2e test saw the bound overshot by
        6 at 4 parallel downloads when only the written files counted)."""
        engine = self.crawler.engine
        downloading = getattr(getattr(engine, "downloader", None), "active", None) or ()
        parsing = getattr(getattr(getattr(engine, "scraper", None), "slot", None), "active", None)
        return len(downloading) + len(parsing or ())

    def _pause(self) -> None:
        self.paused_at = time.monotonic()
        self.crawler.engine.pause()
        self.crawler.stats.inc_value(STAT_PAUSES)
        logger.info(
            "Backpressure: %d item file(s) wait for ingestion (MAX_PENDING_ITEMS=%d); crawl paused",
            self.waiting,
            self.max_pending,
        )
        if not self.poll.running:
            self.poll.start(POLL_S, now=False)

    def _poll(self) -> None:
        self.done = set(self.ingested.refresh())
        self._track_max()
        if self.waiting <= self.resume_at and self.paused_at is not None:
            paused_s = time.monotonic() - self.paused_at
            self.crawler.stats.inc_value(STAT_PAUSED_S, round(paused_s, 3))
            self.paused_at = None
            self.poll.stop()
            logger.info(
                "Backpressure: %d item file(s) wait; crawl resumed after %.1f s",
                self.waiting,
                paused_s,
            )
            self.crawler.engine.unpause()
            # The engine's own heartbeat would resume within 5 s; ask for the next call now.
            slot = getattr(self.crawler.engine, "_slot", None)
            if slot is not None:
                slot.nextcall.schedule()

    def _track_max(self) -> None:
        self.crawler.stats.max_value(STAT_MAX_WAITING, self.waiting)

    def spider_closed(self, spider: Any = None, reason: str = "") -> None:
        if self.poll.running:
            self.poll.stop()
        close = getattr(self.ingested, "close", None)
        if close:
            close()
