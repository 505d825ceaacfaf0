"""End to end through a real dagster-daemon: `rag run` crawls a local site and ingests it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from rag_app.instance import open_instance
from rag_app.search import search
from rag_core.constants import INGEST_JOB, LANE_TAG
from rag_core.ids import item_key
from tests.helpers import build_site, settings_for, static_site

pytestmark = pytest.mark.e2e
PAGES = 40


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site") / "www"
    build_site(root, PAGES)
    with static_site(root) as served:
        yield served.url


def rag(data: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run the `rag` CLI on the data folder ``data``."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER")}
    full_env.update(DATA_DIR=str(data), DUCKDB_PATH=str(data / "rag.duckdb"), **env)
    return subprocess.run(
        [sys.executable, "-m", "rag_app.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def rag_run(data: Path, site: str, mode: str, *more_urls: str, **env: str) -> dict:
    summary_file = data.parent / f"summary-{mode}.json"
    proc = rag(
        data,
        "run",
        "--mode",
        mode,
        "--start-url",
        site,
        *[arg for url in more_urls for arg in ("--start-url", url)],
        "--json-summary",
        str(summary_file),
        CRAWL_CONCURRENCY="2",
        RUN_TIMEOUT_SECONDS="400",
        **env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Progress: Files=" in proc.stdout
    return json.loads(summary_file.read_text())


def table(data: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(data / "rag.duckdb"), read_only=True) as con:
        return con.execute(sql).fetchall()


class SearchLoop(threading.Thread):
    """Searches over and over while `rag run` works, recording when each one ran."""

    def __init__(self, data: Path):
        super().__init__(daemon=True)
        self.settings = settings_for(data, EMBEDDING_SERVER="false")
        from rag_app.search import embedder_for

        self.embedder = embedder_for(self.settings)
        self.embedder.embed(["warm up"])
        self.stop = threading.Event()
        self.windows: list[tuple[float, float, int]] = []
        self.failures: list[str] = []

    def run(self):
        while not self.stop.is_set():
            if self.settings.duckdb_path.exists():
                started = time.time()
                try:
                    hits = search(self.settings, "configure retries", 3, self.embedder)
                    self.windows.append((started, time.time(), len(hits)))
                except Exception as exc:  # "no embeddings stored yet" is fine early on
                    if "no embeddings" not in str(exc):
                        self.failures.append(repr(exc))
            time.sleep(0.1)


@pytest.fixture(scope="module")
def streamed(tmp_path_factory, site):
    data = tmp_path_factory.mktemp("streaming") / "data"
    searcher = SearchLoop(data)
    searcher.start()
    summary = rag_run(data, site, "streaming")
    searcher.stop.set()
    searcher.join()
    return data, summary, searcher


def test_streaming_run_stores_every_page_with_few_runs(streamed, site):
    data, summary, _ = streamed
    items = PAGES + 1
    assert summary["pages"] == items
    assert summary["crawl_status"] == "SUCCESS" and summary["failed_runs"] == 0
    # Micro-batching: far fewer ingestion runs than items.
    assert 1 <= summary["ingestion_runs"] <= items // 4
    urls = {r[0] for r in table(data, "SELECT url FROM documents")}
    expected = {item_key(site + f"p{i}.html") for i in range(PAGES)} | {item_key(site)}
    assert {item_key(u) for u in urls} == expected
    chunks, embedded, dims, orphans = table(
        data,
        "SELECT (SELECT count(*) FROM chunks),"
        " (SELECT count(DISTINCT chunk_id) FROM embeddings),"
        " (SELECT min(len(embedding)) FROM embeddings),"
        " (SELECT count(*) FROM chunks c ANTI JOIN embeddings e USING (chunk_id))",
    )[0]
    assert chunks == embedded == summary["embeddings"] and orphans == 0
    assert dims == 384
    assert table(data, "SELECT count(*) FROM ingest_errors") == [(0,)]


def test_search_worked_while_ingestion_was_writing(streamed):

    data, _, searcher = streamed
    assert searcher.failures == []
    with open_instance(data / "dagster_home") as instance:
        runs = [
            r for r in instance.get_run_records() if r.dagster_run.tags.get(LANE_TAG) == "ingest"
        ]
    assert runs and all(r.dagster_run.status.value == "SUCCESS" for r in runs)
    during = [
        w
        for w in searcher.windows
        if any(r.start_time and r.start_time <= w[0] <= (r.end_time or 0) for r in runs)
    ]
    assert during, "no search overlapped an ingestion run"
    assert any(w[2] == 3 for w in searcher.windows)


def test_status_reads_the_stores_and_the_instance(streamed):
    data, summary, _ = streamed
    proc = rag(data, "status", "--json", "--errors")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["counts"]["documents"] == summary["pages"]
    assert report["counts"]["embeddings"] == summary["embeddings"]
    assert report["dagster"]["partitions"] == summary["pages"]
    assert report["dagster"]["partitions_embedded"] == summary["pages"]
    assert report["dagster"]["runs_in_flight"] == 0
    assert report["errors"] == []
    text = rag(data, "status").stdout
    assert f"Docs={summary['pages']}" in text and "Partitions:" in text


def test_batch_mode_stores_identical_tables(streamed, site, tmp_path_factory):
    streaming_data, _, _ = streamed
    data = tmp_path_factory.mktemp("batch") / "data"
    summary = rag_run(data, site, "batch")
    assert summary["ingestion_runs"] == 1  # everything after the crawl, in one run
    queries = {
        "documents": "SELECT item_id, url, title, text, content_hash FROM documents ORDER BY 1",
        "chunks": "SELECT chunk_id, item_id, chunk_index, heading, text, token_count "
        "FROM chunks ORDER BY 1",
        "embeddings": "SELECT chunk_id, item_id, model FROM embeddings ORDER BY 1",
    }
    for name, sql in queries.items():
        assert table(data, sql) == table(streaming_data, sql), name
    vectors = "SELECT embedding FROM embeddings ORDER BY chunk_id"
    a = np.array([r[0] for r in table(data, vectors)])
    b = np.array([r[0] for r in table(streaming_data, vectors)])
    assert a.shape == b.shape and np.abs(a - b).max() < 1e-5


def _engine_pid(instance, run_id: str) -> int | None:
    import dagster as dg

    for event in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = event.dagster_event.engine_event_data
        if data and "pid" in data.metadata and "Executing steps" in (event.user_message or ""):
            return int(data.metadata["pid"].value)
    return None


def _step_started(instance, run_id: str, step: str) -> bool:
    import dagster as dg

    return any(
        e.step_key == step
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
    )


def test_killed_ingestion_run_recovers_to_identical_stores(streamed, site, tmp_path_factory):
    """SIGKILL the run process mid-batch: the code server marks the run failed, run_retries
    relaunches it (freeing and reusing the ingest queue slot), idempotent writes complete it."""
    import signal

    import dagster as dg

    streaming_data, _, _ = streamed
    data = tmp_path_factory.mktemp("killed") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER")}
    env.update(DATA_DIR=str(data), DUCKDB_PATH=str(data / "rag.duckdb"), CRAWL_CONCURRENCY="2")
    summary_file = data.parent / "summary.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rag_app.cli",
            "run",
            "--mode",
            "batch",
            "--start-url",
            site,
            "--json-summary",
            str(summary_file),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if not (data / "dagster_home" / "dagster.yaml").exists():
            continue
        with open_instance(data / "dagster_home") as instance:
            for record in instance.get_run_records(
                filters=dg.RunsFilter(
                    job_name=INGEST_JOB, statuses=[dg.DagsterRunStatus.STARTED]
                )
            ):
                run_id = record.dagster_run.run_id
                pid = _engine_pid(instance, run_id)
                if pid and _step_started(instance, run_id, "ingest_batch"):
                    os.kill(pid, signal.SIGKILL)
                    killed = run_id
    output, _ = proc.communicate(timeout=400)
    assert killed, "no ingestion run was caught mid-batch"
    assert proc.returncode == 0, output[-3000:]
    with open_instance(data / "dagster_home") as instance:
        runs = {r.dagster_run.run_id: r.dagster_run for r in instance.get_run_records()}
    assert runs[killed].status == dg.DagsterRunStatus.FAILURE
    retries = [r for r in runs.values() if r.tags.get("dagster/parent_run_id") == killed]
    assert [r.status for r in retries] == [dg.DagsterRunStatus.SUCCESS]
    # Same rows as the uninterrupted run: nothing missing, nothing duplicated.
    for sql in (
        "SELECT item_id, url, title, text, content_hash FROM documents ORDER BY 1",
        "SELECT chunk_id, item_id, chunk_index, text FROM chunks ORDER BY 1",
        "SELECT chunk_id, item_id, model FROM embeddings ORDER BY 1",
    ):
        assert table(data, sql) == table(streaming_data, sql)
    assert table(data, "SELECT count(*) - count(DISTINCT chunk_id) FROM embeddings") == [(0,)]
