"""Fault-injection soak: a 60-page site ingested while faults hit at random points, then one
clean `rag run`; the stores must equal those of a clean run.

Faults (one seed picks an order and times): SIGKILL of the ingestion run's process, of the
daemon, of the embedding server, of the crawl; a burst of 503s from the site; the DuckDB
file held by another process for 30 s. `make soak` runs more seeds (SOAK_SEEDS=0,1,2,...).
"""

from __future__ import annotations

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
FAULTS = ("worker", "daemon", "embedding_server", "crawl", "burst_503", "duckdb_held")
ENV = {"CRAWL_CONCURRENCY": "2", "RUN_TIMEOUT_SECONDS": "500"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("soak-site") / "www"
    build_site(root, PAGES)
    with static_site(root) as served:
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


def inject(fault: str, data, mode: dict, log: list, session: subprocess.Popen) -> None:
    if fault in MARKERS:
        # Wait (up to 120 s: a loaded machine starts slowly) for the process to exist: a
        # fault that hits nothing tests nothing.
        deadline = time.monotonic() + 120
        victims = processes_of(data, MARKERS[fault])
        while not victims and time.monotonic() < deadline and session.poll() is None:
            time.sleep(0.3)
            victims = processes_of(data, MARKERS[fault])
        for victim in victims:
            victim.send_signal(signal.SIGKILL)
        log.append(f"{fault}: SIGKILL {len(victims)} process(es)")
    elif fault == "burst_503":
        mode["value"] = "down"
        time.sleep(3)
        mode["value"] = "up"
        log.append("burst_503: 3 s of 503s")
    elif fault == "duckdb_held":
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); time.sleep(30)",
             str(data / "rag.duckdb")],
        )  # fmt: skip
        holder.wait(timeout=60)
        log.append("duckdb_held: 30 s")


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
    rng = random.Random(seed)
    # Killing the daemon or the embedding server ends the session (`rag run` stops), so
    # those two come last; the order of the others, and every time, depends on the seed.
    fatal = ("daemon", "embedding_server")
    faults = rng.sample([f for f in FAULTS if f not in fatal], k=len(FAULTS) - 2)
    faults += rng.sample(fatal, k=2)
    times = sorted(rng.uniform(2, 40) for _ in faults)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER")}
    env.update(DATA_DIR=str(data), DUCKDB_PATH=str(data / "rag.duckdb"), **ENV)
    faulty = subprocess.Popen(
        [sys.executable, "-m", "rag_app.cli", "run", "--start-url", url],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    log: list[str] = []
    started = time.monotonic()
    for fault, at in zip(faults, times, strict=True):
        while time.monotonic() - started < at and faulty.poll() is None:
            time.sleep(0.2)
        inject(fault, data, mode, log, faulty)
    try:
        faulty.wait(timeout=600)
    finally:
        if faulty.poll() is None:
            faulty.kill()
    mode["value"] = "up"
    print(f"seed {seed}: {log}; faulty run exit {faulty.returncode}")
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
