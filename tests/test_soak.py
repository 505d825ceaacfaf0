"""Fault-injection soak: a 60-page site ingested while faults hit at random points, then one
clean `rag run`; the stores must equal those of a clean run.

Faults (one seed picks an order and times): SIGKILL of the ingestion run's process, of the
daemon, of the embedding server, of the crawl; a burst of 503s from the site; the DuckDB
file held by another process for 30 s. `make soak` runs more seeds (SOAK_SEEDS=0,1,2,...).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from rag_core.fingerprint import settings_fingerprint
from tests.helpers import build_site, settings_for, static_site
from tests.test_e2e_daemon import rag, table

pytestmark = pytest.mark.e2e
PAGES = 60
SEEDS = [int(s) for s in os.environ.get("SOAK_SEEDS", "0").split(",") if s.strip()]
# Each fault belongs to the phase whose process it needs: it waits for that process, so it
# always hits something (a fault that hits nothing tests nothing). Killing the daemon or the
# embedding server ends the session (`rag run` stops), so those two come last.
CRAWL_PHASE = ("crawl", "burst_503")
INGEST_PHASE = ("worker", "duckdb_held")
FATAL = ("daemon", "embedding_server")
FAULTS = CRAWL_PHASE + INGEST_PHASE + FATAL
SITE_DELAY_S = 0.5
ENV = {"CRAWL_CONCURRENCY": "2", "RUN_TIMEOUT_SECONDS": "500"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("soak-site") / "www"
    build_site(root, PAGES)
    # Slow enough (about 15 s of crawl at CRAWL_CONCURRENCY=2) that the crawl-phase faults
    # find a crawl to hit.
    with static_site(root, delay_s=SITE_DELAY_S) as served:
        yield served.mode, served.url


@pytest.fixture(scope="module")
def reference(site, tmp_path_factory):
    _, url = site
    data = tmp_path_factory.mktemp("soak-clean") / "data"
    proc = rag(data, "run", "--start-url", url, **ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return data


def processes_of(data, marker: str) -> list[psutil.Process]:
    """Processes started for ``data`` (found by their DATA_DIR) whose command line has
    ``marker``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
            if marker in cmdline and proc.environ().get("DATA_DIR") == str(data):
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


MARKERS = {
    # The code server starts each run in a multiprocessing child (the run worker).
    "worker": "spawn_main(",
    "daemon": "dagster-daemon",
    "embedding_server": "rag_app.embedding_server",
    "crawl": "-m crawler",
}
# The process whose presence means the fault's phase is under way.
PHASE_MARKER = {
    "crawl": MARKERS["crawl"],
    "burst_503": MARKERS["crawl"],
    "worker": MARKERS["worker"],
    "duckdb_held": MARKERS["worker"],
    "daemon": MARKERS["daemon"],
    "embedding_server": MARKERS["embedding_server"],
}


def fault_plan(seed: int) -> list[tuple[str, float]]:
    """The faults in order, each with its delay (s) after the previous fault (and then it
    waits for its phase's process):
    crawl-phase faults first, then ingestion-phase ones, then the two fatal ones, each
    group in an order the seed picks."""
    rng = random.Random(seed)
    plan = []
    for group in (CRAWL_PHASE, INGEST_PHASE, FATAL):
        plan += [(fault, rng.uniform(0.3, 3.0)) for fault in rng.sample(group, k=len(group))]
    return plan


def wait_for(
    data, marker: str, session: subprocess.Popen, timeout_s: float = 120.0
) -> list[psutil.Process]:
    """The session's processes with ``marker``, once there are any (waiting up to 120 s: a
    loaded machine starts slowly); [] if none came or the session ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and session.poll() is None:
        found = processes_of(data, marker)
        if found:
            return found
        time.sleep(0.2)
    return []


def inject(fault: str, delay_s: float, data, mode: dict, session: subprocess.Popen) -> int:
    """Inject ``fault`` ``delay_s`` after the previous one, once its phase is under way;
    return how many things it hit. A process is killed the moment it is found: a run
    worker on a quick machine can be gone a second later."""
    time.sleep(delay_s)
    found = wait_for(data, PHASE_MARKER[fault], session)
    if not found:
        return 0
    if fault in MARKERS:  # its phase's process is its victim
        for victim in found:
            with contextlib.suppress(psutil.Error):
                victim.send_signal(signal.SIGKILL)
        return len(found)
    if fault == "burst_503":
        mode["value"] = "down"
        time.sleep(3)
        mode["value"] = "up"
        return 1
    # duckdb_held: another process holds the DuckDB file for 30 s.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); time.sleep(30)",
         str(data / "rag.duckdb")],
    )  # fmt: skip
    holder.wait(timeout=60)
    return 1


def stores(data):
    return {
        "docs": table(data, "SELECT item_id, url, title, text, content_hash FROM documents"),
        "chunks": table(data, "SELECT chunk_id, item_id, chunk_index, text FROM chunks"),
        "vectors": dict(table(data, "SELECT chunk_id, embedding FROM embeddings")),
        "dupes": table(data, "SELECT count(*) - count(DISTINCT chunk_id) FROM embeddings"),
        "fps": table(data, "SELECT DISTINCT fingerprint FROM embeddings"),
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_faults_then_one_clean_run_equal_a_clean_run(site, reference, tmp_path, seed):
    mode, url = site
    data = tmp_path / "data"
    plan = fault_plan(seed)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER")}
    env.update(DATA_DIR=str(data), DUCKDB_PATH=str(data / "rag.duckdb"), **ENV)
    faulty = subprocess.Popen(
        [sys.executable, "-m", "rag_app.cli", "run", "--start-url", url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    hits: dict[str, int] = {}
    for fault, delay_s in plan:
        hits[fault] = inject(fault, delay_s, data, mode, faulty)
    try:
        faulty.wait(timeout=600)
    finally:
        if faulty.poll() is None:
            faulty.kill()
    mode["value"] = "up"
    print(f"seed {seed}: faults (hits) {hits}; faulty run exit {faulty.returncode}")
    # Every non-fatal fault found its target. The fatal ones hit only if the session still
    # runs by then (the first one ends it; a quick session may have finished on its own).
    assert all(hits[f] > 0 for f, _ in plan if f not in FATAL), hits
    clean = rag(data, "run", "--start-url", url, **ENV)
    assert clean.returncode == 0, clean.stdout[-3000:] + clean.stderr[-3000:]
    got, want = stores(data), stores(reference)
    assert sorted(got["docs"]) == sorted(want["docs"])
    assert sorted(got["chunks"]) == sorted(want["chunks"])
    assert got["vectors"].keys() == want["vectors"].keys()
    for chunk_id, vector in got["vectors"].items():
        assert np.allclose(vector, want["vectors"][chunk_id], atol=1e-5)
    assert got["dupes"] == [(0,)]
    fingerprint = settings_fingerprint(settings_for(data))
    assert got["fps"] == [(fingerprint,)]
    assert len(list((data / "raw").glob("item_*.json"))) == PAGES + 1
