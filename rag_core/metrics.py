"""Prometheus metrics of the platform, derived from the stores and the Dagster instance.

Nothing is counted in memory: every value is read (at most once per ``MIN_REFRESH_S``) from
what survives a restart: the item files, DuckDB, the crawl's statistics file and the Dagster
instance (run records, asset materialisations and their metadata). So counters never reset
when ``rag run`` or ``make dev`` restarts; a counter drops only when its source is deleted
(``make clean-data``, or Dagster's run history is wiped), which Prometheus' ``rate()`` and
``increase()`` treat as a counter reset.

``metrics_exporter`` serves them on ``METRICS_HOST:METRICS_PORT/metrics`` (prometheus-client's
own HTTP server, in a thread) for as long as ``rag run`` or ``make dev`` runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from rag_core import store
from rag_core.items import scan_item_files
from rag_core.settings import Settings

log = logging.getLogger(__name__)

MIN_REFRESH_S = 1.0
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
LATENCY_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
RUN_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
STAGES = ("raw_items", "documents", "chunks", "embeddings")
REFUSED_PREFIX = "rag/refused_"
STATUS_PREFIX = "downloader/response_status_count/"
IN_FLIGHT = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
OUTCOMES = {"SUCCESS": "success", "FAILURE": "failure", "CANCELED": "canceled"}
# Job names go in ``dagster_job``: ``job`` is the label Prometheus gives every scrape target,
# and an exported ``job`` would be renamed ``exported_job`` on ingestion.


def histogram_buckets(values: list[float], bounds: tuple[float, ...]) -> list[tuple[str, float]]:
    """Cumulative Prometheus buckets (``le`` label, count) of ``values``, +Inf last."""
    ordered = sorted(values)
    buckets, index = [], 0
    for bound in bounds:
        while index < len(ordered) and ordered[index] <= bound:
            index += 1
        buckets.append((_le(bound), index))
    buckets.append(("+Inf", len(ordered)))
    return buckets


def _le(bound: float) -> str:
    return str(float(bound))


def crawl_counters(stats: dict) -> dict[str, dict[str, float]]:
    """Counters of one crawl from its Scrapy statistics: responses by status, errors by kind,
    refusals by reason (the ``rag/refused_<reason>`` keys), backpressure pauses."""
    out: dict[str, dict[str, float]] = {"status": {}, "errors": {}, "refused": {}, "pauses": {}}
    for key, value in stats.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if key.startswith(STATUS_PREFIX):
            out["status"][key[len(STATUS_PREFIX) :]] = value
        elif key.startswith(REFUSED_PREFIX):
            out["refused"][key[len(REFUSED_PREFIX) :]] = value
    out["errors"] = {
        "http": stats.get("rag/http_errors", 0) or 0,
        "download": stats.get("rag/download_errors", 0) or 0,
    }
    out["pauses"] = {"": stats.get("rag/backpressure_pauses", 0) or 0}
    return out


def _add(total: dict[str, dict[str, float]], part: dict[str, dict[str, float]]) -> None:
    for name, series in part.items():
        bucket = total.setdefault(name, {})
        for label, value in series.items():
            bucket[label] = bucket.get(label, 0) + value


@dataclass
class InstanceView:
    """What the Dagster instance says, read incrementally (materialisations by cursor)."""

    home: Path
    instance: Any = None
    cursors: dict[str, str | None] = field(default_factory=dict)
    # embeddings: per run (metadata is the same for every partition of a run)
    embed_runs: dict[str, dict] = field(default_factory=dict)
    # embeddings: latest materialisation time per partition
    embedded_at: dict[str, float] = field(default_factory=dict)
    crawls: dict[str, dict] = field(default_factory=dict)  # start_time -> scrapy stats

    def open(self) -> Any:
        if self.instance is None:
            if not (self.home / "dagster.yaml").exists():
                return None
            from rag_core.instance import open_instance

            self.instance = open_instance(self.home)
        return self.instance

    def _new_records(self, asset: str) -> list:
        import dagster as dg

        records = []
        while True:
            result = self.instance.fetch_materializations(
                dg.AssetKey(asset), limit=1000, cursor=self.cursors.get(asset), ascending=True
            )
            records += result.records
            if result.cursor:
                self.cursors[asset] = result.cursor
            if not result.has_more:
                return records

    def refresh(self) -> bool:
        if self.open() is None:
            return False
        for record in self._new_records("embeddings"):
            mat = record.asset_materialization
            if mat is None:
                continue
            if record.partition_key:
                self.embedded_at[record.partition_key] = record.timestamp
            if record.run_id not in self.embed_runs:
                meta = {k: v.value for k, v in mat.metadata.items()}
                self.embed_runs[record.run_id] = {**meta, "timestamp": record.timestamp}
        for record in self._new_records("crawled_pages"):
            mat = record.asset_materialization
            stats = mat.metadata.get("scrapy_stats") if mat else None
            if stats is not None and isinstance(stats.value, dict):
                start = str(stats.value.get("start_time", record.run_id))
                self.crawls[start] = stats.value
        return True

    def runs(self) -> list:
        return list(self.instance.get_run_records())

    def close(self) -> None:
        if self.instance is not None:
            self.instance.dispose()
            self.instance = None


class PlatformCollector(Collector):
    """A prometheus-client collector: one consistent snapshot of every metric per scrape."""

    def __init__(self, settings: Settings, session_start: float | None = None):
        self.settings = settings
        self.session_start = session_start or time.time()
        self.view = InstanceView(settings.dagster_home)
        self.lock = threading.Lock()
        self.cached: list | None = None
        self.cached_at = 0.0
        self.store_counts: dict | None = None
        self.scrapes = 0
        self.scraped_at: list[float] = []
        self.model = self._model_name()

    def _model_name(self) -> str:
        from rag_core.embedding import resolve_model

        try:
            return resolve_model(self.settings.embedding_model).name
        except Exception:  # a missing model fails the runs that need it, not the metrics
            return self.settings.embedding_model

    def collect(self):
        with self.lock:
            now = time.time()
            self.scraped_at = [*self.scraped_at[-9:], now]
            if self.cached is None or now - self.cached_at >= MIN_REFRESH_S:
                self.cached = list(self._families())
                self.cached_at = time.time()
            return list(self.cached)

    def _duckdb(self) -> dict | None:
        path = self.settings.duckdb_path
        if not store.exists(path):
            return {"items": {}, "rows": {}, "errors": {}, "items_with_model": 0}
        try:
            with store.connect(path, read_only=True, timeout_s=3.0) as con:
                self.store_counts = store.metric_counts(con, self.model)
        except store.StoreLockedError:
            log.info("DuckDB busy; the metrics keep the previous store figures")
        return self.store_counts

    def _live_crawl(self) -> dict:
        path = self.settings.crawl_state_dir / "last_crawl_stats.json"
        try:
            stats = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return stats if isinstance(stats, dict) else {}

    def _families(self):
        files = scan_item_files(self.settings.raw_dir)
        counts = self._duckdb() or {"items": {}, "rows": {}, "errors": {}, "items_with_model": 0}
        has_instance = self.view.refresh()

        stored = GaugeMetricFamily(
            "rag_items_stored", "Items stored per stage (item files, then DuckDB tables)",
            labels=["stage"],
        )  # fmt: skip
        stored.add_metric(["files"], len(files))
        for stage in STAGES:
            stored.add_metric([stage], counts["items"].get(stage, 0))
        yield stored
        rows = GaugeMetricFamily("rag_rows_stored", "Rows per DuckDB table", labels=["table"])
        for stage in STAGES:
            rows.add_metric([stage], counts["rows"].get(stage, 0))
        yield rows
        errors = GaugeMetricFamily(
            "rag_item_errors", "Items whose ingestion failed, by stage (ingest_errors)",
            labels=["stage"],
        )  # fmt: skip
        for stage in sorted(set(STAGES) | set(counts["errors"])):
            errors.add_metric([stage], counts["errors"].get(stage, 0))
        yield errors
        coverage = GaugeMetricFamily(
            "rag_index_coverage_ratio",
            "Item files with a vector of the current embedding model, over all item files",
        )
        coverage.add_metric([], counts["items_with_model"] / len(files) if files else 1.0)
        yield coverage

        # The crawl: finished crawls from the instance, plus the one in progress.
        crawl_totals: dict[str, dict[str, float]] = {}
        for stats in self.view.crawls.values():
            _add(crawl_totals, crawl_counters(stats))
        # The crawl in progress (or just finished and not yet recorded by its asset).
        live = self._live_crawl()
        if live and str(live.get("start_time")) not in self.view.crawls:
            _add(crawl_totals, crawl_counters(live))
        yield _counter(
            "rag_pages_crawled", "HTTP responses the crawl received, by status code",
            "status", crawl_totals.get("status", {}),
        )  # fmt: skip
        yield _counter(
            "rag_crawl_errors", "Failed crawl requests, by kind (HTTP error status, download)",
            "kind", crawl_totals.get("errors", {}),
        )  # fmt: skip
        yield _counter(
            "rag_refusals", "Pages or requests the crawl refused, by reason",
            "reason", crawl_totals.get("refused", {}),
        )  # fmt: skip
        pauses = CounterMetricFamily(
            "rag_crawl_backpressure_pauses", "Times the crawl paused for ingestion to catch up"
        )
        pauses.add_metric([], crawl_totals.get("pauses", {}).get("", 0))
        yield pauses
        if not has_instance:
            return
        yield from self._instance_families(files)

    def _instance_families(self, files: list[tuple[str, int]]):
        view = self.view
        embedded = sum(int(m.get("embedded", 0) or 0) for m in view.embed_runs.values())
        reused = sum(int(m.get("reused", 0) or 0) for m in view.embed_runs.values())
        yield _single_counter("rag_chunks_embedded", "Chunks the encoder embedded", embedded)
        yield _single_counter(
            "rag_chunks_reused", "Chunks whose stored vector was reused (unchanged text)", reused
        )
        speed = GaugeMetricFamily(
            "rag_encoder_chunks_per_second", "Encoder speed in the latest run that embedded"
        )
        latest = max(
            (m for m in view.embed_runs.values() if float(m.get("chunks_per_s", 0) or 0) > 0),
            key=lambda m: m["timestamp"],
            default=None,
        )
        speed.add_metric([], float(latest["chunks_per_s"]) if latest else 0.0)
        yield speed

        # Waiting: item files whose current version has no embeddings materialisation yet.
        waiting = sum(
            1 for key, mtime_ns in files if view.embedded_at.get(key, 0.0) < mtime_ns / 1e9
        )
        yield _gauge("rag_items_waiting", "Item files waiting for ingestion", waiting)
        latencies = [
            view.embedded_at[key] - mtime_ns / 1e9
            for key, mtime_ns in files
            if view.embedded_at.get(key, 0.0) >= mtime_ns / 1e9
        ]
        yield _histogram(
            "rag_item_to_embedding_seconds",
            "Seconds from an item file's write to its embeddings being recorded "
            "(current version of each item)",
            [], [(latencies, ())], LATENCY_BUCKETS,
        )  # fmt: skip

        runs = view.runs()
        by_job: dict[tuple[str, str], list[float]] = {}
        in_flight: dict[str, int] = {}
        batches: list[float] = []
        for record in runs:
            run = record.dagster_run
            status = run.status.value
            if status in IN_FLIGHT:
                in_flight[run.job_name] = in_flight.get(run.job_name, 0) + 1
            outcome = OUTCOMES.get(status)
            if outcome and record.start_time and record.end_time:
                by_job.setdefault((run.job_name, outcome), []).append(
                    record.end_time - record.start_time
                )
            size = run.tags.get("rag/batch_items")
            if size and size.isdigit():
                batches.append(float(size))
        yield _histogram(
            "rag_run_duration_seconds", "Duration of finished Dagster runs by job and outcome",
            ["dagster_job", "outcome"], [(v, k) for k, v in sorted(by_job.items())], RUN_BUCKETS,
        )  # fmt: skip
        yield _histogram(
            "rag_batch_size_items", "Items per ingestion run (the sensor's batches)",
            [], [(batches, ())], BATCH_BUCKETS,
        )  # fmt: skip
        flight = GaugeMetricFamily(
            "rag_runs_in_flight", "Dagster runs queued or running, by job", labels=["dagster_job"]
        )
        for job, count in sorted(in_flight.items()):
            flight.add_metric([job], count)
        yield flight

    def wait_for_scrape(self, timeout_s: float) -> bool:
        """Block until one more scrape happened (so the final values reach Prometheus);
        False on timeout. Only worth calling when someone scrapes (``scraped_at``)."""
        with self.lock:
            seen = len(self.scraped_at) and self.scraped_at[-1]
            self.cached = None  # the next scrape reads the final state
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            with self.lock:
                if self.scraped_at and self.scraped_at[-1] != seen:
                    return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        with self.lock:
            self.view.close()


def _counter(name: str, doc: str, label: str, values: dict[str, float]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _single_counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _histogram(name, doc, labels, series, bounds) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, label_values in series:
        family.add_metric(list(label_values), histogram_buckets(values, bounds), sum(values))
    return family


def _scrape_interval(times: list[float]) -> float | None:
    gaps = [b - a for a, b in zip(times, times[1:], strict=False) if b > a]
    return max(gaps) if gaps else None


@contextlib.contextmanager
def metrics_exporter(settings: Settings, session_start: float | None = None) -> Iterator[Any]:
    """Serve ``/metrics`` while the block runs (METRICS_PORT=0: nothing). On a normal exit,
    if Prometheus has been scraping, wait (up to two scrape intervals, at most 60 s) for one
    more scrape so the final counts reach it."""
    if not settings.metrics_port:
        yield None
        return
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    collector = PlatformCollector(settings, session_start)
    registry.register(collector)
    try:
        server, thread = start_http_server(
            settings.metrics_port, addr=settings.metrics_host, registry=registry
        )
    except OSError as exc:
        # Metrics are for watching, not for ingesting: a busy port must not stop the work.
        print(
            f"Warning: no metrics: cannot listen on {settings.metrics_host}:"
            f"{settings.metrics_port} ({exc}); set METRICS_PORT to a free port (0 = off)",
            file=sys.stderr,
        )
        collector.close()
        yield None
        return
    print(f"Metrics at http://{settings.metrics_host}:{settings.metrics_port}/metrics")
    try:
        yield collector
        interval = _scrape_interval(collector.scraped_at)
        if interval is not None:
            collector.wait_for_scrape(min(2 * interval + 1, 60.0))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        collector.close()
