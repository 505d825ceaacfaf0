"""Metrics from the stores (fast, no daemon) and the backpressure extension's logic with a
stand-in engine; the real Prometheus and `rag run` are in test_ops_e2e."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from scrapy.settings import Settings

from crawler.backpressure import Backpressure
from rag_app import metrics
from rag_app.runner import free_port
from rag_core.ids import item_key
from rag_core.items import item_file_name
from rag_core.stores import duckdb_store as store
from tests.helpers import settings_for, write_page


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_histogram_buckets_are_cumulative() -> None:
    assert metrics.histogram_buckets([1, 3, 3, 100], (2, 4, 8)) == [
        ("2.0", 1),
        ("4.0", 3),
        ("8.0", 3),
        ("+Inf", 4),
    ]
    assert metrics.histogram_buckets([], (1,)) == [("1.0", 0), ("+Inf", 0)]


def test_crawl_counters_read_scrapy_stats() -> None:
    counters = metrics.crawl_counters(
        {
            "downloader/response_status_count/200": 7,
            "downloader/response_status_count/404": 1,
            "rag/refused_private_address": 2,
            "rag/http_errors": 1,
            "rag/backpressure_pauses": 3,
            "start_time": "2026-01-01T00:00:00",
        }
    )
    assert counters["status"] == {"200": 7, "404": 1}
    assert counters["refused"] == {"private_address": 2}
    assert counters["errors"] == {"http": 1, "download": 0}
    assert counters["pauses"] == {"": 3}


@pytest.fixture()
def stocked(tmp_path: Path):
    """A data folder with three item files, two ingested (one with an error), a crawl's stats."""
    settings = settings_for(tmp_path)
    keys = [
        write_page(settings.raw_dir, f"http://site.test/p{i}", f"P{i}", "<p>x</p>")
        for i in range(3)
    ]
    with store.connect(settings.duckdb_path) as con:
        store.ensure_schema(con, dim=3)
        store.insert_rows(con, "documents", ["item_id", "url", "text", "content_hash"],
                          [(k, "u", "t", "h") for k in keys[:2]])  # fmt: skip
        store.insert_rows(
            con, "chunks",
            ["chunk_id", "item_id", "chunk_index", "text", "token_count", "content_hash"],
            [(f"c{i}", keys[i // 2], i % 2, "t", 1, "h") for i in range(4)],
        )  # fmt: skip
        model = metrics.PlatformCollector(settings).model
        store.insert_rows(
            con, "embeddings", ["chunk_id", "item_id", "model", "embedding"],
            [(f"c{i}", keys[i // 2], model, [0.1, 0.2, 0.3]) for i in range(4)],
        )  # fmt: skip
        store.insert_rows(con, "ingest_errors", ["item_id", "stage", "error"],
                          [(keys[2], "documents", "no main text")])  # fmt: skip
    settings.crawl_state_dir.mkdir(parents=True)
    (settings.crawl_state_dir / "last_crawl_stats.json").write_text(
        json.dumps({"downloader/response_status_count/200": 3, "start_time": "t0", "live": True})
    )
    return settings, keys


def test_store_metrics_equal_the_stores_and_survive_a_restart(stocked) -> None:
    settings, _ = stocked
    first = CollectorRegistry()
    first.register(metrics.PlatformCollector(settings))
    values = samples(first)
    assert values[("rag_items_stored", (("stage", "files"),))] == 3
    assert values[("rag_items_stored", (("stage", "documents"),))] == 2
    assert values[("rag_rows_stored", (("table", "embeddings"),))] == 4
    assert values[("rag_item_errors", (("stage", "documents"),))] == 1
    assert values[("rag_index_coverage_ratio", ())] == pytest.approx(2 / 3)
    assert values[("rag_pages_crawled_total", (("status", "200"),))] == 3
    # No instance yet: no instance metrics, and no failure either.
    assert not any(name == "rag_chunks_embedded_total" for name, _ in values)
    # A new process (a restarted `rag run`) reads the same values: nothing was in memory.
    second = CollectorRegistry()
    second.register(metrics.PlatformCollector(settings))
    assert samples(second) == values


@pytest.mark.e2e
def test_exporter_serves_metrics_and_a_busy_port_only_warns(stocked, capsys) -> None:
    settings, _ = stocked
    port = free_port()
    settings = settings_for(settings.data_dir, METRICS_PORT=str(port))
    with metrics.metrics_exporter(settings) as collector:
        assert collector is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
        assert 'rag_items_stored{stage="files"} 3.0' in text
        with metrics.metrics_exporter(settings) as second:  # the same port again
            assert second is None
    assert "no metrics: cannot listen" in capsys.readouterr().err
    with socket.socket() as sock:  # the server is gone
        assert sock.connect_ex(("127.0.0.1", port)) != 0
    with metrics.metrics_exporter(settings_for(settings.data_dir, METRICS_PORT="0")) as off:
        assert off is None


# -- backpressure logic with a stand-in engine ---------------------------------------------


class _Stats(dict):
    def get_value(self, key, default=None):
        return self.get(key, default)

    def inc_value(self, key, count=1):
        self[key] = self.get(key, 0) + count

    def max_value(self, key, value):
        self[key] = max(self.get(key, value), value)


class _Engine:
    def __init__(self):
        self.paused = False
        self.pauses = 0

    def pause(self):
        self.paused, self.pauses = True, self.pauses + 1

    def unpause(self):
        self.paused = False


class _Crawler:
    def __init__(self, concurrency=1):
        self.stats, self.engine = _Stats(), _Engine()
        self.settings = Settings({"CONCURRENT_REQUESTS": concurrency})


class _Ingested:
    def __init__(self):
        self.keys: set[str] = set()
        self.calls = 0

    def refresh(self):
        self.calls += 1
        return self.keys


def test_backpressure_pauses_at_the_bound_and_resumes_when_ingestion_catches_up(
    tmp_path: Path,
) -> None:
    crawler, ingested = _Crawler(), _Ingested()
    raw = tmp_path / "raw"
    old = write_page(raw, "http://site.test/p1", "P1", "<p>stored by an earlier crawl</p>")
    os.utime(raw / item_file_name(old), ns=(0, 0))
    extension = Backpressure(crawler, 3, ingested, raw)
    extension.poll.start = lambda *a, **k: None  # no reactor here; _poll is called by hand
    urls = [f"http://site.test/p{i}" for i in range(6)]

    def scrape(url, written=True):
        if written:
            write_page(raw, url, "P", "<p>new</p>")
        extension.item_scraped({"url": url})

    scrape(urls[0])
    scrape(urls[1], written=False)  # unchanged page: its file is older than the crawl
    scrape(urls[1])  # now rewritten: counted
    assert extension.written == {item_key(urls[0]), item_key(urls[1])}
    assert not crawler.engine.paused and ingested.calls == 0  # below the bound: no query
    ingested.keys = {item_key(urls[0])}
    scrape(urls[2])  # 3 written, 1 done: 2 wait, so the crawl goes on
    assert not crawler.engine.paused and ingested.calls == 1
    scrape(urls[3])
    assert crawler.engine.paused and extension.waiting == 3
    extension._poll()  # nothing new ingested: still paused
    assert crawler.engine.paused
    ingested.keys |= {item_key(urls[1])}
    extension.poll.running = True
    extension.poll.stop = lambda: setattr(extension.poll, "running", False)
    extension._poll()
    assert not crawler.engine.paused and extension.waiting == 2  # 2 = 3 - one batch of 1
    assert crawler.stats["rag/backpressure_pauses"] == 1
    assert crawler.stats["rag/backpressure_max_waiting"] == 3


def test_backpressure_counts_requests_in_flight_against_the_bound(tmp_path: Path) -> None:
    crawler, ingested = _Crawler(), _Ingested()
    raw = tmp_path / "raw"
    extension = Backpressure(crawler, 5, ingested, raw)
    extension.poll.start = lambda *a, **k: None
    crawler.engine.downloader = SimpleNamespace(active={"r1", "r2"})
    crawler.engine.scraper = SimpleNamespace(slot=SimpleNamespace(active={"r3"}))
    for i in range(2):
        write_page(raw, f"http://site.test/q{i}", "Q", "<p>q</p>")
        extension.item_scraped({"url": f"http://site.test/q{i}"})
    # 2 files wait and 3 requests may still become files: at the bound of 5, so pause now.
    assert crawler.engine.paused and extension.waiting == 2


def test_backpressure_resumes_one_crawl_batch_below_the_bound(tmp_path: Path) -> None:
    # On unpause the engine sends CONCURRENT_REQUESTS requests at once: resuming just below
    # the bound would let the waiting files overshoot it by a whole batch.
    crawler, ingested = _Crawler(concurrency=4), _Ingested()
    raw = tmp_path / "raw"
    extension = Backpressure(crawler, 10, ingested, raw)
    extension.poll.start = lambda *a, **k: None
    extension.poll.running = True
    extension.poll.stop = lambda: setattr(extension.poll, "running", False)
    urls = [f"http://site.test/r{i}" for i in range(10)]
    for url in urls:
        write_page(raw, url, "R", "<p>r</p>")
        extension.item_scraped({"url": url})
    assert crawler.engine.paused
    ingested.keys = {item_key(u) for u in urls[:3]}  # 7 wait: one batch of 4 would make 11
    extension._poll()
    assert crawler.engine.paused
    ingested.keys = {item_key(u) for u in urls[:4]}  # 6 wait: 6 + 4 = the bound
    extension._poll()
    assert not crawler.engine.paused


def test_a_file_stamped_just_before_the_start_by_the_coarse_clock_still_counts(
    tmp_path: Path,
) -> None:
    """File mtimes come from the kernel's coarse clock, a tick behind time.time_ns(): a page
    written right after the crawl started may be stamped a few ms before it (a CI flake)."""
    crawler, ingested = _Crawler(), _Ingested()
    raw = tmp_path / "raw"
    extension = Backpressure(crawler, 5, ingested, raw)
    extension.poll.start = lambda *a, **k: None
    key = write_page(raw, "http://site.test/early", "E", "<p>e</p>")
    stamp = time.time_ns() - 5_000_000  # what the coarse clock may give, 5 ms "ago"
    os.utime(raw / item_file_name(key), ns=(stamp, stamp))
    extension.item_scraped({"url": "http://site.test/early"})
    assert extension.waiting == 1
