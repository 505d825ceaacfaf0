"""Operations end to end through `rag run` and a real dagster-daemon, with embedding made slow
on purpose (EMBEDDING_SLOWDOWN_MS):

- backpressure: a 300-page local site; the items waiting for ingestion never exceed
  MAX_PENDING_ITEMS by more than one crawl batch, and the stores end complete;
- metrics: a real Prometheus (Debian's `prometheus`, started here on a free port) scrapes that
  `rag run`; PromQL answers through its HTTP API equal the counts in DuckDB;
- priority: high-priority pages get their first vector before any low-priority page.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from rag_app.instance import open_instance
from rag_app.runner import free_port
from rag_core.constants import EMBEDDINGS_ASSET, INGEST_JOB
from rag_core.ids import item_key
from rag_core.items import scan_item_files
from rag_core.stores import duckdb_store as store
from tests.helpers import start_static_site
from tests.test_e2e_daemon import table

pytestmark = pytest.mark.e2e
PAGES = 300
MAX_PENDING = 100
CONCURRENCY = 4
PROMETHEUS = shutil.which("prometheus")


def rag_run(data: Path, site: str, **env: str) -> dict:
    """`rag run` in streaming mode on ``site``; the summary it wrote."""
    summary_file = data.parent / "summary.json"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER")}
    full_env.update(DATA_DIR=str(data), DUCKDB_PATH=str(data / "rag.duckdb"), **env)
    full_env.setdefault("RUN_TIMEOUT_SECONDS", "1100")
    proc = subprocess.run(
        [sys.executable, "-m", "rag_app.cli", "run", "--start-url", site,
         "--json-summary", str(summary_file)],
        env=full_env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(summary_file.read_text())


def build_small_pages_site(root: Path, pages: int) -> None:
    """An index linking ``pages`` short pages (one chunk each: the test is about flow, and
    embedding is made slow on purpose instead)."""
    root.mkdir(parents=True)
    links = "".join(f'<li><a href="/p{i}.html">Page {i}</a></li>' for i in range(pages))
    (root / "index.html").write_text(
        f"<html><head><title>Home</title></head><body><nav><ul>{links}</ul></nav>"
        "<main><h1>Home</h1><p>Welcome to the test documentation.</p></main></body></html>"
    )
    for i in range(pages):
        (root / f"p{i}.html").write_text(
            f"<html><head><title>Page {i}</title></head><body><main><h1>Page {i}</h1>"
            f"<p>Page {i} describes topic {i * 7}: how to configure retries for it, which "
            "settings matter and what to check when it fails.</p></main></body></html>"
        )


class WaitingSampler(threading.Thread):
    """Samples how many item files wait for ingestion (no embeddings materialisation yet)."""

    def __init__(self, data: Path):
        super().__init__(daemon=True)
        self.data = data
        self.stop = threading.Event()
        self.samples: list[int] = []

    def run(self):
        instance = None
        while not self.stop.is_set():
            if instance is None and (self.data / "dagster_home" / "dagster.yaml").exists():
                instance = open_instance(self.data / "dagster_home")
            if instance is not None:
                files = {key for key, _ in scan_item_files(self.data / "raw")}
                done = instance.get_materialized_partitions(dg.AssetKey(EMBEDDINGS_ASSET))
                self.samples.append(len(files - set(done)))
            time.sleep(0.3)
        if instance is not None:
            instance.dispose()


class Prometheus:
    """A real Prometheus server scraping ``target`` every second."""

    def __init__(self, root: Path, target: str):
        self.port = free_port()
        root.mkdir(parents=True, exist_ok=True)
        config = root / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: rag\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        self.log = open(root / "prometheus.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [
                PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1):
                    return
            except OSError:
                assert self.process.poll() is None, (root / "prometheus.log").read_text()
                time.sleep(0.2)
        raise RuntimeError("Prometheus did not become ready")

    def query(self, promql: str) -> list[dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}
        )
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, promql: str) -> float:
        result = self.query(promql)
        assert len(result) == 1, (promql, result)
        return float(result[0]["value"][1])

    def names(self) -> list[str]:
        url = f"http://127.0.0.1:{self.port}/api/v1/label/__name__/values"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())["data"]

    def final(self, selector: str) -> float:
        """The last scraped value of ``selector``: `rag run` has exited, so Prometheus marked
        its series stale and a plain instant query returns nothing."""
        return self.value(f"last_over_time({selector}[30m])")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def big_run(tmp_path_factory):
    """One `rag run` of a 300-page site: slow embedding, backpressure on, Prometheus scraping."""
    if PROMETHEUS is None:
        pytest.fail("prometheus is not installed: `make test` installs it (apt-get)")
    root = tmp_path_factory.mktemp("site300") / "www"
    build_small_pages_site(root, PAGES)
    # No latency: the crawl runs far ahead of a slow ingestion.
    server = start_static_site(root, delay_s=0)
    site = server.url
    data = tmp_path_factory.mktemp("ops") / "data"
    metrics_port = free_port()
    prometheus = Prometheus(data.parent / "prometheus", f"127.0.0.1:{metrics_port}")
    sampler = WaitingSampler(data)
    sampler.start()
    try:
        summary = rag_run(
            data, site,
            CRAWL_CONCURRENCY=str(CONCURRENCY), MAX_PENDING_ITEMS=str(MAX_PENDING),
            EMBEDDING_SLOWDOWN_MS="30", METRICS_PORT=str(metrics_port),
        )  # fmt: skip
        sampler.stop.set()
        sampler.join()
        yield data, site, summary, sampler.samples, prometheus
    finally:
        sampler.stop.set()
        prometheus.stop()
        server.stop()


def test_backpressure_bounds_waiting_items_and_stores_end_complete(big_run):
    data, site, summary, samples, prometheus = big_run
    assert summary["crawl_status"] == "SUCCESS" and summary["failed_runs"] == 0
    # Waiting items stay within one crawl batch (the requests in flight) of the bound...
    assert max(samples) <= MAX_PENDING + CONCURRENCY, max(samples)
    # ...and the bound was reached: without backpressure the crawl runs far ahead.
    assert max(samples) >= MAX_PENDING // 2, max(samples)
    assert prometheus.final("rag_crawl_backpressure_pauses_total") >= 1
    assert prometheus.value("max_over_time(rag_items_waiting[30m])") <= MAX_PENDING + CONCURRENCY
    # Complete: every page of the site has its document, chunks and vectors.
    expected = {item_key(site + f"p{i}.html") for i in range(PAGES)} | {item_key(site)}
    assert {r[0] for r in table(data, "SELECT item_id FROM documents")} == expected
    assert table(data, "SELECT count(*) FROM chunks c ANTI JOIN embeddings e USING (chunk_id)") == [
        (0,)
    ]
    assert summary["pages"] == summary["documents"] == PAGES + 1


def test_prometheus_answers_match_duckdb(big_run):
    data, _, summary, _, prometheus = big_run
    with store.connect(data / "rag.duckdb", read_only=True) as con:
        documents, chunks, vectors, raw = con.execute(
            "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM chunks),"
            " (SELECT count(*) FROM embeddings), (SELECT count(*) FROM raw_items)"
        ).fetchone()
    assert prometheus.final('rag_items_stored{stage="documents"}') == documents
    assert prometheus.final('rag_items_stored{stage="files"}') == PAGES + 1
    assert prometheus.final('rag_rows_stored{table="chunks"}') == chunks
    assert prometheus.final('rag_rows_stored{table="embeddings"}') == vectors
    embedded = prometheus.final("rag_chunks_embedded_total")
    assert embedded + prometheus.final("rag_chunks_reused_total") == vectors
    assert prometheus.final('rag_pages_crawled_total{status="200"}') == raw
    assert prometheus.final("rag_batch_size_items_sum") == documents
    assert prometheus.final("rag_batch_size_items_count") == summary["ingestion_runs"]
    assert (
        prometheus.final(
            f'rag_run_duration_seconds_count{{dagster_job="{INGEST_JOB}",outcome="success"}}'
        )
        == summary["ingestion_runs"]
    )
    assert prometheus.final("rag_items_waiting") == 0
    assert prometheus.final("rag_index_coverage_ratio") == 1.0
    assert prometheus.value("sum(last_over_time(rag_item_errors[30m]))") == 0
    assert prometheus.final("rag_encoder_chunks_per_second") > 0
    latency = prometheus.final("rag_item_to_embedding_seconds_count")
    assert latency == documents
    # Every series has the Prometheus base-unit names the README lists.
    names = set(prometheus.names())
    assert {
        "rag_pages_crawled_total", "rag_items_stored", "rag_chunks_embedded_total",
        "rag_chunks_reused_total", "rag_item_errors", "rag_items_waiting",
        "rag_batch_size_items_bucket", "rag_item_to_embedding_seconds_bucket",
        "rag_encoder_chunks_per_second", "rag_run_duration_seconds_bucket",
        "rag_index_coverage_ratio", "rag_crawl_errors_total",
    } <= names  # fmt: skip


# -- priority ---------------------------------------------------------------------------------

HIGH, LOW = 10, 20


def build_ranked_site(root: Path) -> None:
    """An index linking /docs pages (high priority) first and /blog pages (low) after them."""
    (root / "docs").mkdir(parents=True)
    (root / "blog").mkdir()
    paths = [f"docs/d{i}.html" for i in range(HIGH)] + [f"blog/b{i}.html" for i in range(LOW)]
    links = "".join(f'<li><a href="/{p}">{p}</a></li>' for p in paths)
    (root / "index.html").write_text(
        f"<html><head><title>Home</title></head><body><nav><ul>{links}</ul></nav>"
        "<main><h1>Home</h1><p>Welcome to the documentation.</p></main></body></html>"
    )
    for i, path in enumerate(paths):
        body = "".join(
            f"<p>Page {path} paragraph {s} describes topic {i * 3 + s}: installation, "
            "configuration, retries and troubleshooting on a small machine.</p>"
            for s in range(6)
        )
        (root / path).write_text(
            f"<html><head><title>{path}</title></head><body><main><h1>{path}</h1>{body}"
            "</main></body></html>"
        )


class FirstVectors(threading.Thread):
    """Records when each item's first vector appears in DuckDB."""

    def __init__(self, db: Path):
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.first: dict[str, float] = {}

    def run(self):
        while not self.stop.is_set():
            if self.db.exists():
                try:
                    with store.connect(self.db, read_only=True, timeout_s=5) as con:
                        if store.table_exists(con, "embeddings"):
                            now = time.time()
                            for (item_id,) in con.execute(
                                "SELECT DISTINCT item_id FROM embeddings"
                            ).fetchall():
                                self.first.setdefault(item_id, now)
                except (store.StoreLockedError, duckdb.Error):
                    pass
            time.sleep(0.2)


def test_high_priority_pages_get_their_vectors_first(tmp_path):
    root = tmp_path / "www"
    build_ranked_site(root)
    server = start_static_site(root)
    site = server.url
    data = tmp_path / "data"
    watcher = FirstVectors(data / "rag.duckdb")
    watcher.start()
    try:
        summary = rag_run(
            data, site,
            CRAWL_CONCURRENCY="1", EMBEDDING_SLOWDOWN_MS="150", METRICS_PORT="0",
            PRIORITY_RULES="/docs/*=50,/blog/*=-10",
        )  # fmt: skip
    finally:
        watcher.stop.set()
        watcher.join()
        server.stop()
    assert summary["documents"] == HIGH + LOW + 1 and summary["failed_runs"] == 0
    highs = [watcher.first[item_key(site + f"docs/d{i}.html")] for i in range(HIGH)]
    lows = [watcher.first[item_key(site + f"blog/b{i}.html")] for i in range(LOW)]
    assert max(highs) < min(lows), (sorted(highs), sorted(lows))
    with open_instance(data / "dagster_home") as instance:
        tags = [
            r.dagster_run.tags.get("dagster/priority")
            for r in instance.get_run_records()
            if r.dagster_run.job_name == INGEST_JOB
        ]
    assert "50" in tags and "-10" in tags, tags
