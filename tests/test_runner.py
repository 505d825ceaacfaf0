"""Pieces of `rag run`: orphaned-run recovery, retry bookkeeping, progress output."""

from __future__ import annotations

import io
import time
import uuid
from types import SimpleNamespace

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from rag_app.instance import open_instance
from rag_app.runner import Progress, Reporter, RunFailedError, _failed_runs, fail_orphaned_runs
from rag_core.constants import INGEST_JOB


@pytest.mark.dagster
def test_runs_left_in_flight_by_a_dead_session_are_failed(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with open_instance(home) as instance:
        started = DagsterRun(
            job_name=INGEST_JOB, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED
        )
        done = DagsterRun(
            job_name=INGEST_JOB, run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.SUCCESS
        )
        instance.run_storage.add_run(started)
        instance.run_storage.add_run(done)
    assert fail_orphaned_runs(home) == [started.run_id]
    with open_instance(home) as instance:
        assert instance.get_run_by_id(started.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(done.run_id).status == dg.DagsterRunStatus.SUCCESS


@pytest.mark.dagster
def test_a_live_daemon_on_the_instance_is_left_alone(tmp_path):
    from dagster._daemon.types import DaemonHeartbeat

    home = tmp_path / "home"
    home.mkdir()
    with open_instance(home) as instance:
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), "SENSOR", None, None))
    with pytest.raises(RunFailedError, match="another Dagster daemon"):
        fail_orphaned_runs(home)


def record(run_id, status, end_time=None, parent=None):
    tags = {"dagster/parent_run_id": parent} if parent else {}
    run = SimpleNamespace(run_id=run_id, status=SimpleNamespace(value=status), tags=tags)
    return SimpleNamespace(dagster_run=run, end_time=end_time)


def test_failed_runs_wait_for_their_retry_then_count_as_final():
    now = 1000.0
    runs = [
        record("a", "FAILURE", end_time=now - 5),  # just failed: a retry may still come
        record("b", "FAILURE", end_time=now - 100),  # long ago, never retried: final
        record("c", "FAILURE", end_time=now - 100),  # retried by d
        record("d", "SUCCESS", end_time=now - 50, parent="c"),
    ]
    assert _failed_runs(runs, now) == (["a"], ["b"])


def test_progress_prints_a_plain_line_per_change_when_not_a_terminal(tmp_path):
    stream = io.StringIO()
    timeline = tmp_path / "timeline.csv"
    reporter = Reporter(stream, timeline=str(timeline))
    counts = dict(files=2, raw_items=2, documents=1, chunks=5, embeddings=0, errors=0)
    reporter.sample(Progress(10.0, counts, 2))
    reporter.sample(Progress(11.0, counts, 2))  # same figures: no new line
    reporter.sample(Progress(12.0, {**counts, "embeddings": 5}, 2))
    reporter.done()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "Progress: Files=2, Docs=1, Chunks=5, Embeddings=0, Errors=0, Runs=2 | 0.5 chunks/s | 10s",
        "Progress: Files=2, Docs=1, Chunks=5, Embeddings=5, Errors=0, Runs=2 | 0.4 chunks/s | 12s",
    ]
    rows = timeline.read_text().splitlines()
    assert rows[0].startswith("epoch,elapsed,files") and len(rows) == 4


@pytest.mark.dagster
def test_a_stopped_session_leaves_no_heartbeat_behind(tmp_path):
    from dagster._daemon.types import DaemonHeartbeat

    from rag_app.runner import forget_daemon

    home = tmp_path / "home"
    home.mkdir()
    with open_instance(home) as instance:
        instance.add_daemon_heartbeat(DaemonHeartbeat(time.time(), "SENSOR", None, None))
    forget_daemon(home)
    assert fail_orphaned_runs(home) == []  # no "another daemon is running" any more


def test_summary_ends_with_a_search_on_the_ingested_site_and_the_ui_command(tmp_path):
    import shlex

    from rag_app.runner import next_commands
    from rag_core.stores import duckdb_store as store
    from tests.helpers import settings_for

    settings = settings_for(tmp_path / "data")
    with store.connect(settings.duckdb_path) as con:
        store.ensure_schema(con)
        store.insert_rows(
            con, "documents", ["item_id", "url", "title", "text", "content_hash", "word_count"],
            [("a", "http://s.test/a", "Installing on Windows", "t", "h", 900),
             ("b", "http://s.test/b", "Short page", "t", "h2", 10)],
        )  # fmt: skip
    search, ui = next_commands(settings)
    words = shlex.split(search)
    # Pasted into a fresh shell it searches this data folder, for the longest page's title.
    assert words[0] == f"DATA_DIR={settings.data_dir}"
    assert words[1] == f"DUCKDB_PATH={settings.duckdb_path}"
    assert words[2].endswith("rag") and words[3:] == ["search", "Installing on Windows"]
    assert " dev " in ui and ui.endswith("the Dagster UI at http://127.0.0.1:3000")
    assert ui.startswith(f"DATA_DIR={settings.data_dir} ")


@pytest.mark.unit
def test_progress_reads_keep_the_last_figures_while_another_process_holds_the_store(settings):
    """A writer holding the DuckDB file past a progress tick must not end `rag run` (a
    benchmark run under load died on the 30 s wait of one progress read)."""
    import subprocess
    import sys

    from rag_app.runner import WATCH_READ_TIMEOUT_S, watch_counts

    settings.duckdb_path.parent.mkdir(parents=True)
    first, fresh = watch_counts(settings, None)
    assert fresh and first["chunks"] == 0
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True);"
         " time.sleep(60)", str(settings.duckdb_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        last = {**first, "chunks": 7}
        started = time.monotonic()
        counts, fresh = watch_counts(settings, last)
        assert not fresh and counts == last
        assert time.monotonic() - started < WATCH_READ_TIMEOUT_S + 5
    finally:
        holder.kill()
        holder.wait()
    counts, fresh = watch_counts(settings, last)
    assert fresh and counts["chunks"] == 0


def test_the_embedding_server_runs_with_few_malloc_arenas(tmp_path, monkeypatch):
    """The server's malloc arenas are bounded (README, Memory under Concurrency); a
    MALLOC_ARENA_MAX the user set is kept."""
    from rag_app.runner import embedding_server_environment
    from rag_core.settings import TOKEN_ENV
    from tests.helpers import settings_for

    settings = settings_for(tmp_path)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    env = embedding_server_environment(settings, "tok")
    assert env["MALLOC_ARENA_MAX"] == "2" and env[TOKEN_ENV] == "tok"
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert embedding_server_environment(settings, "tok")["MALLOC_ARENA_MAX"] == "4"


@pytest.mark.e2e
def test_the_session_s_code_server_serves_the_location_through_a_workspace_of_its_own(tmp_path):
    """The workspace `rag run` hands the daemon and the crawl launch names the session's one
    code server under the location name of the repository's workspace.yaml, and leaves that
    file alone (users run `dagster dev` on it)."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from rag_app.runner import (
        CODE_LOCATION,
        Services,
        start_code_server,
        wait_for_code_server,
    )
    from rag_core.constants import CRAWL_JOB
    from rag_core.settings import PROJECT_ROOT, child_environment
    from tests.helpers import settings_for

    repo_workspace = (PROJECT_ROOT / "workspace.yaml").read_text()
    settings = settings_for(tmp_path / "data")
    services = Services(tmp_path / "logs")
    try:
        server = start_code_server(settings, services, child_environment(settings))
        wait_for_code_server(server, services)
        assert server.workspace.parent == settings.dagster_home
        with (
            open_instance(settings.dagster_home) as instance,
            WorkspaceProcessContext(instance, WorkspaceFileTarget([str(server.workspace)])) as ctx,
        ):
            location = ctx.create_request_context().get_code_location(CODE_LOCATION)
            jobs = {
                j.name for repo in location.get_repositories().values() for j in repo.get_all_jobs()
            }
            assert CRAWL_JOB in jobs
        [(name, process)] = services.processes
        assert name == "code-server" and process.poll() is None
    finally:
        services.stop()
    assert (PROJECT_ROOT / "workspace.yaml").read_text() == repo_workspace
