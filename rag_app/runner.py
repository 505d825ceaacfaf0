"""``rag run``: the whole platform on one machine, end to end, with live progress.

It starts what a deployment keeps running (the warm embedding server, one Dagster
code server, a Dagster daemon on the project's instance), serves the demo site when
no START_URLS are set, launches the crawl run through the instance's run queue, and
lets the sensor drive ingestion. It returns once every crawled item is ingested.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rag_app.instance import open_instance
from rag_app.metrics import metrics_exporter
from rag_app.session import (
    SESSION_ENV,
    SessionLock,
    SessionLockedError,
    signals_raise,
    stop_session_processes,
)
from rag_app.status import StoreCounts, item_keys_on_disk, store_counts
from rag_core.constants import (
    CRAWL_JOB,
    EMBEDDED_METADATA,
    EMBEDDINGS_ASSET,
    FIRST_STORED_AT_METADATA,
    IN_FLIGHT_STATUSES,
    INGEST_JOB,
    LANE_INGEST,
    LANE_TAG,
    REUSED_METADATA,
)
from rag_core.items import scan_item_files
from rag_core.prune import describe_refusal, read_refusal, read_removals
from rag_core.reconcile import request_reconcile
from rag_core.redact import mask_secrets
from rag_core.rekey import rekey_item_files
from rag_core.server_state import state_path
from rag_core.settings import PROJECT_ROOT, TOKEN_ENV, Settings, child_environment, new_token
from rag_core.stores import StoreLockedError

BIN = Path(sys.executable).parent
FINISHED = ("SUCCESS", "FAILURE", "CANCELED")


class RunFailedError(RuntimeError):
    """The crawl or ingestion did not complete."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare_instance(settings: Settings) -> Path:
    """Create DAGSTER_HOME with a link to the repository's dagster.yaml."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    link = home / "dagster.yaml"
    target = PROJECT_ROOT / "dagster.yaml"
    if not (link.is_symlink() and link.resolve() == target.resolve()):
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    fail_orphaned_runs(home)
    # Item files of the first key scheme get readable keys before the daemon starts; the
    # sensor then swaps their partitions and rows (rag_core.rekey).
    for line in rekey_item_files(settings.raw_dir).lines():
        print(line)
    return home


def fail_orphaned_runs(home: Path, heartbeat_age_s: float = 60.0) -> list[str]:
    """Mark runs left in flight by a session that is gone (killed, rebooted) as failed.

    With the default run launcher nothing else can tell that their process died once the
    code server that started them is gone, and a stale STARTED run would hold the ingest
    lane (and the sensor) forever. Queued runs stay queued: the new daemon launches them.
    Refuses to touch anything while another daemon is alive on this instance.
    """
    import dagster as dg

    with open_instance(home) as instance:
        beats = instance.get_daemon_heartbeats().values()
        if any(time.time() - beat.timestamp < heartbeat_age_s for beat in beats):
            raise RunFailedError(
                f"another Dagster daemon is running on {home} (make run or make dev): stop it first"
            )
        stale = instance.get_run_records(
            filters=dg.RunsFilter(
                statuses=[
                    dg.DagsterRunStatus(status)
                    for status in IN_FLIGHT_STATUSES
                    if status != "QUEUED"  # no process yet: the new daemon launches it
                ]
            )
        )
        for record in stale:
            instance.report_engine_event(
                "Run left in flight by an earlier session that is gone; marked failed.",
                record.dagster_run,
            )
            instance.report_run_failed(record.dagster_run)
    return [r.dagster_run.run_id for r in stale]


@dataclass
class Services:
    """Background processes started for one session, stopped together with all they started."""

    log_dir: Path
    session_id: str = ""
    processes: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` marked with this session's id, so every descendant can be found again."""
        return {**env, SESSION_ENV: self.session_id} if self.session_id else dict(env)

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            cmd,
            cwd=PROJECT_ROOT,
            env=self.environment(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own process group: Ctrl-C on the terminal reaches only `rag run`, which then
            # stops the services in order instead of all of them dying at once.
            start_new_session=True,
        )
        self.processes.append((name, process))
        return process

    def check_alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                raise RunFailedError(
                    f"{name} exited with code {process.returncode}; see {self.log_dir / name}.log"
                )

    def stop(self, timeout_s: float = 20.0) -> None:
        """Stop every service's whole process group, then anything else of this session."""
        for _, process in reversed(self.processes):
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for _, process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The leader may be gone while members of its group (run workers) are not.
            _signal_group(process, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        if self.session_id:
            # Processes that left the groups (a run worker in a session of its own).
            stop_session_processes(self.session_id, timeout_s=10.0)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


@contextlib.contextmanager
def session(settings: Settings, command: str) -> Iterator[Services]:
    """One session on ``settings.data_dir``: lock held, leftovers reaped, signals handled.

    Raises RunFailedError at once if another live session holds the folder. SIGTERM and
    SIGHUP raise SessionInterruptedError in the body; whatever ends the body, every process
    the session started is stopped before the lock is released.
    """
    lock = SessionLock(settings.data_dir, command)
    try:
        lock.acquire()
    except SessionLockedError as exc:
        raise RunFailedError(str(exc)) from None
    try:
        reaped = lock.reap_previous()
        if reaped:
            print(f"Stopped {len(reaped)} process(es) left running by a killed earlier session")
            # Their heartbeats are fresh but their daemon is gone: forget it, or the
            # "another daemon" guard would refuse this session.
            if (settings.dagster_home / "dagster.yaml").exists():
                forget_daemon(settings.dagster_home)
        services = Services(settings.data_dir / "logs", session_id=lock.session_id)
        # A process started with SIGINT ignored (a background job of a non-interactive shell:
        # `rag run &` in a script, CI) passes that on to what it starts, and Dagster's code
        # server maps SIGTERM to SIGINT's action: it ignored both, and every stop waited its
        # 20 s timeout and then SIGKILLed it. A handler here is reset to the default at exec.
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        with signals_raise():
            try:
                yield services
            finally:
                # No signal may interrupt the clean-up itself.
                previous = {
                    sig: signal.signal(sig, signal.SIG_IGN)
                    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
                }
                try:
                    services.stop()
                    # With the lock held, any heartbeat on the instance is from the daemon
                    # just stopped: clear it, or the next session would take it for live.
                    if (settings.dagster_home / "dagster.yaml").exists():
                        forget_daemon(settings.dagster_home)
                finally:
                    for sig, old in previous.items():
                        signal.signal(sig, old)
    finally:
        lock.release()


def start_embedding_server(settings: Settings, services: Services, token: str) -> str:
    """Start the warm embedding server for ``settings`` on a free port; return its URL.

    It accepts only requests carrying ``token``, handed over in its environment.
    """
    port = free_port()
    services.start(
        "embedding-server",
        [
            sys.executable, "-m", "rag_app.embedding_server", "--port", str(port),
            "--provider", settings.embedding_provider,
            "--model", settings.embedding_model, "--dtype", settings.embedding_dtype,
            "--threads", str(settings.torch_num_threads),
            # rag search finds the warm model through this file (rag_core.server_state).
            "--state-file", str(state_path(settings.data_dir)),
        ],
        embedding_server_environment(settings, token),
    )  # fmt: skip
    return f"http://127.0.0.1:{port}"


# glibc gives threads that allocate at once their own malloc arenas (up to 8 per core), and
# each arena keeps memory it freed: the server runs torch's threads and one thread per HTTP
# connection. Two arenas bound that on many-core machines; on 2 cores the server's peak RSS
# measured the same either way (README, Concurrency and machine size).
EMBEDDING_SERVER_MALLOC_ARENAS = "2"


def embedding_server_environment(settings: Settings, token: str) -> dict[str, str]:
    """The warm server's environment: the session's, its token, and few malloc arenas (a
    MALLOC_ARENA_MAX already set by the user is kept)."""
    env = child_environment(settings, **{TOKEN_ENV: token})
    env.setdefault("MALLOC_ARENA_MAX", EMBEDDING_SERVER_MALLOC_ARENAS)
    return env


def wait_for_embedding_server(
    url: str, services: Services, token: str, timeout_s: float = 180
) -> dict:
    """Block until the server has loaded its model and answers."""
    from rag_core.embedders.server_client import health

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        services.check_alive()
        described = health(url, token, timeout=1)
        if described:
            return described
        time.sleep(0.2)
    raise RunFailedError(f"the embedding server at {url} did not start in {timeout_s:.0f} s")


# The code location: the module `workspace.yaml` names, under the same location name, so
# runs of earlier sessions (queued, retried) find their location again.
CODE_LOCATION = "rag"
CODE_MODULE = "rag_assets.definitions"
SESSION_WORKSPACE = "session-workspace.yaml"


@dataclass(frozen=True)
class CodeServer:
    """The session's Dagster code server and the workspace file that points at it."""

    port: int
    workspace: Path


def start_code_server(settings: Settings, services: Services, env: dict[str, str]) -> CodeServer:
    """Start the session's one Dagster code server (`dagster api grpc`, a single process)
    on a free port, and write a workspace file with a `grpc_server` entry for it.

    Given the repository's `workspace.yaml` (a `python_module` location), the daemon runs a
    code server of its own and replaces it at every workspace reload (every 60 s, fixed in
    Dagster), while the old one lives on as long as a run it launched: three or four at
    once, ~190 MB each (docs/architecture.md, *One code server per session*). A `grpc_server`
    location is only reconnected on reload. Run workers are its children and inherit ``env``
    (the session id, the embedding server's URL and token).
    """
    port = free_port()
    services.start(
        "code-server",
        [
            str(BIN / "dagster"), "api", "grpc", "-m", CODE_MODULE,
            "-d", str(PROJECT_ROOT), "--location-name", CODE_LOCATION,
            "--host", "127.0.0.1", "--port", str(port),
        ],
        env,
    )  # fmt: skip
    workspace = settings.dagster_home / SESSION_WORKSPACE
    workspace.parent.mkdir(parents=True, exist_ok=True)
    workspace.write_text(
        "# Written by each `rag run` session: its one code server (rag_app/runner.py).\n"
        "load_from:\n"
        "  - grpc_server:\n"
        "      host: 127.0.0.1\n"
        f"      port: {port}\n"
        f"      location_name: {CODE_LOCATION}\n"
    )
    return CodeServer(port, workspace)


def wait_for_code_server(server: CodeServer, services: Services, timeout_s: float = 180) -> None:
    """Block until the code server accepts connections: `dagster api grpc` loads the
    definitions before it binds its port, so an open port means a loaded location."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        services.check_alive()
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", server.port), timeout=1),
        ):
            return
        time.sleep(0.2)
    raise RunFailedError(f"the Dagster code server did not start in {timeout_s:.0f} s")


@contextlib.contextmanager
def demo_site_if_needed(settings: Settings) -> Iterator[str | None]:
    """Serve the bundled demo site when the user set no START_URLS."""
    if settings.start_urls:
        yield None
        return
    from demo_site.serve import DEMO_SITE_ROOT, serve_demo_site

    if not any(DEMO_SITE_ROOT.glob("*.html")):
        raise RunFailedError(
            f"the demo site is missing: run `python -m demo_site.generate --out {DEMO_SITE_ROOT}`"
        )
    with serve_demo_site(settings.demo_site_port) as url:
        yield url


@dataclass
class Progress:
    """One progress snapshot."""

    elapsed: float
    counts: dict
    runs: int
    note: str = ""  # e.g. a re-index under way after a settings change

    def line(self) -> str:
        c = self.counts
        rate = c["chunks"] / self.elapsed if self.elapsed else 0.0
        note = f" | {self.note}" if self.note else ""
        return (
            f"Progress: Files={c['files']}, Docs={c['documents']}, Chunks={c['chunks']}, "
            f"Embeddings={c['embeddings']}, Errors={c['errors']}, Runs={self.runs} "
            f"| {rate:.1f} chunks/s | {self.elapsed:.0f}s{note}"
        )


def reindex_note(settings: Settings, files: int) -> str:
    """While two fingerprints are stored: "Index <fp>: n of m pages; re-index under way ..."."""
    from rag_app.status import describe_coverage, index_coverage
    from rag_core.fingerprint import settings_fingerprint

    coverage = index_coverage(settings.duckdb_path, settings_fingerprint(settings), files)
    return describe_coverage(coverage) if coverage["pages_other"] else ""


class Reporter:
    """Prints progress in place on a terminal, one plain line per change otherwise."""

    def __init__(self, stream=sys.stdout, timeline: str | None = None):
        self.stream = stream
        self.tty = stream.isatty()
        self.last = ""
        self.timeline = open(timeline, "w") if timeline else None  # noqa: SIM115
        if self.timeline:
            self.timeline.write(
                "epoch,elapsed,files,raw_items,documents,chunks,embeddings,errors,runs\n"
            )

    def sample(self, progress: Progress) -> None:
        """Show one snapshot (and append it to the timeline file, if any)."""
        if self.timeline:
            c = progress.counts
            self.timeline.write(
                f"{time.time():.3f},{progress.elapsed:.3f},{c['files']},{c['raw_items']},"
                f"{c['documents']},{c['chunks']},{c['embeddings']},{c['errors']},{progress.runs}\n"
            )
            self.timeline.flush()
        self.update(progress.line())

    def update(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif text.split("|")[0] != self.last.split("|")[0]:
            self.stream.write(text + "\n")
            self.stream.flush()
        self.last = text

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
        if self.timeline:
            self.timeline.close()
            self.timeline = None


def _runs_since(instance, started: dt.datetime) -> list:
    import dagster as dg

    return list(instance.get_run_records(filters=dg.RunsFilter(created_after=started)))


def _embedding_figures(instance, run_records) -> dict:
    """From the embeddings asset's metadata, once per run (every partition of a run carries
    the same metadata): when the first vector was committed, vectors computed and reused."""
    import dagster as dg

    first, embedded, reused = [], 0, 0
    for record in run_records:
        if record.dagster_run.tags.get(LANE_TAG) != LANE_INGEST:
            continue
        for event in instance.all_logs(
            record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ):
            mat = event.asset_materialization
            if mat and mat.asset_key == dg.AssetKey(EMBEDDINGS_ASSET):
                meta = {k: v.value for k, v in mat.metadata.items()}
                if meta.get(FIRST_STORED_AT_METADATA):
                    first.append(float(meta[FIRST_STORED_AT_METADATA]))
                embedded += int(meta.get(EMBEDDED_METADATA, 0))
                reused += int(meta.get(REUSED_METADATA, 0))
                break
    return {
        "first_stored_at": min(first) if first else None,
        "embedded": embedded,
        "reused": reused,
    }


def run_pipeline(settings: Settings, reporter: Reporter | None = None) -> dict:
    """Crawl and ingest end to end; return the summary (raises RunFailedError on failure).

    Holds the data folder's session lock throughout; SIGTERM/SIGHUP raise
    SessionInterruptedError after every process of the session has been stopped.
    """

    reporter = reporter or Reporter()
    wall_start = time.time()
    started_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with session(settings, "rag run") as services:
        home = prepare_instance(settings)
        # The sensor's first tick re-requests item files an earlier session failed to ingest.
        request_reconcile(settings.raw_dir)
        try:
            return _run(settings, home, services, reporter, wall_start, started_at)
        finally:
            with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
                reporter.done()


def _run(settings, home, services, reporter, wall_start, started_at) -> dict:
    overrides = {}
    with demo_site_if_needed(settings) as site_url, metrics_exporter(settings, wall_start):
        if site_url:
            print(f"Serving the demo site at {site_url}")
        server_url = settings.embedding_server_url
        if settings.embedding_server and not server_url:
            token = new_token()
            server_url = start_embedding_server(settings, services, token)
            # Runs get the token through their environment only: never on a command line
            # (visible in ps) and never in a log line.
            overrides[TOKEN_ENV] = token
        if server_url:
            overrides["EMBEDDING_SERVER_URL"] = server_url
        env = services.environment(child_environment(settings, **overrides))
        # One code server for the whole session, started before the daemon (which would
        # otherwise load an unreachable location and retry only at its next reload, 60 s on).
        code_server = start_code_server(settings, services, env)
        wait_for_code_server(code_server, services)
        workspace = str(code_server.workspace)
        services.start("dagster-daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace], env)
        if server_url and not settings.embedding_server_url:
            described = wait_for_embedding_server(server_url, services, overrides[TOKEN_ENV])
            print(f"Embedding model warm: {described['model']} ({described['dtype']})")
        crawl_run_id = str(uuid.uuid4())
        launch = subprocess.run(
            [
                str(BIN / "dagster"),
                "job",
                "launch",
                "-w",
                workspace,
                "--job",
                CRAWL_JOB,
                "--run-id",
                crawl_run_id,
            ],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        if launch.returncode != 0:
            raise RunFailedError(
                f"could not launch the crawl run:\n{mask_secrets(launch.stderr[-3000:])}"
            )
        print(f"Crawl run {crawl_run_id} queued; the sensor ingests pages as they arrive")
        return _watch(settings, home, crawl_run_id, started_at, wall_start, services, reporter)


def next_commands(settings: Settings, ui_url: str = "http://127.0.0.1:3000") -> list[str]:
    """The two commands a user wants after a run: search what was ingested, open the UI.

    Settings that differ from their defaults are spelled out in front, so the line works
    when pasted into a fresh shell.
    """
    import shlex
    import shutil

    from rag_core import stores
    from rag_core.settings import load_settings

    title = None
    with contextlib.suppress(Exception):  # a busy or broken store: the generic question
        title = stores.open_store(settings, 5).example_title()
    question = " ".join((title or "how do I get started").split()[:8])
    defaults = load_settings(environ={}, dotenv=Path("/nonexistent"))
    env = " ".join(
        f"{name}={shlex.quote(str(value))}"
        for name, value, default in (
            ("DATA_DIR", settings.data_dir, defaults.data_dir),
            ("DUCKDB_PATH", settings.duckdb_path, defaults.duckdb_path),
        )
        if Path(value).resolve() != Path(default).resolve()
    )
    prefix = f"{env} " if env else ""
    rag = BIN / "rag"
    if shutil.which("rag") == str(rag):
        rag = "rag"
    elif rag.is_relative_to(Path.cwd()):
        rag = rag.relative_to(Path.cwd())  # .venv/bin/rag after `make run`
    rag = shlex.quote(str(rag))
    return [
        f"{prefix}{rag} search {shlex.quote(question)}",
        f"{prefix}{rag} dev    # the Dagster UI at {ui_url}",
    ]


def forget_daemon(home: Path) -> None:
    """Clear the heartbeats of the daemon this session stopped, so the next session on this
    instance does not take it for one still running."""
    with open_instance(home) as instance:
        instance.wipe_daemon_heartbeats()


def _materialized_since(instance, since_ts: float) -> set[str]:
    """Item partitions whose embeddings were materialised after ``since_ts``."""
    import dagster as dg

    keys: set[str] = set()
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(EMBEDDINGS_ASSET), after_timestamp=since_ts
            ),
            limit=5000,
            cursor=cursor,
        )
        keys.update(r.partition_key for r in result.records if r.partition_key)
        if not result.has_more:
            return keys
        cursor = result.cursor


def _awaiting_ingestion(settings: Settings, instance, since_ts: float) -> set[str]:
    """Item files written this session (or never ingested) whose embeddings are not yet stored."""
    import dagster as dg

    ever = set(instance.get_materialized_partitions(dg.AssetKey(EMBEDDINGS_ASSET)))
    since_ns = since_ts * 1e9
    waiting = {
        key for key, mtime_ns in scan_item_files(settings.raw_dir)
        if key not in ever or mtime_ns >= since_ns
    }  # fmt: skip
    return waiting - _materialized_since(instance, since_ts)


def _failed_runs(ingest_records, now: float, grace_s: float = 30.0) -> tuple[list, list]:
    """Failed ingestion runs without a retry yet: (a retry may still come, final).

    The daemon retries a failed run within seconds (run_retries in dagster.yaml); a failed
    run with no retry after ``grace_s`` is final.
    """
    children = {r.dagster_run.tags.get("dagster/parent_run_id") for r in ingest_records}
    pending, final = [], []
    for record in ingest_records:
        run = record.dagster_run
        if run.status.value != "FAILURE" or run.run_id in children:
            continue
        recent = now - (record.end_time or now) <= grace_s
        (pending if recent else final).append(run.run_id)
    return pending, final


def crawl_problems(settings: Settings, since: float) -> dict:
    """Why this session's crawl proves nothing: its failed start URLs (from its statistics)."""
    import json

    stats_file = settings.crawl_state_dir / "last_crawl_stats.json"
    try:
        if stats_file.stat().st_mtime < since:
            return {"start_failures": {}}
        stats = json.loads(stats_file.read_text())
    except (OSError, ValueError):
        return {"start_failures": {}}
    return {"start_failures": dict(stats.get("start_failures") or {})}


# How long one progress read waits for a writer: a batch's commit can hold the DuckDB file
# longer on a loaded machine, and the loop must keep watching the runs and the services.
WATCH_READ_TIMEOUT_S = 2.0


def watch_counts(settings: Settings, last: dict | None) -> tuple[dict, bool]:
    """The store's counts for the progress line, and whether they are fresh: while a writer
    holds the file, the last figures (a progress read never ends the session)."""
    try:
        counts = store_counts(settings.raw_dir, settings.duckdb_path, WATCH_READ_TIMEOUT_S)
        return counts.as_dict(), True
    except StoreLockedError:
        if last is not None:
            return last, False
        files = len(item_keys_on_disk(settings.raw_dir))
        return StoreCounts(files, 0, 0, 0, 0, 0).as_dict(), False


def _watch(settings, home, crawl_run_id, started_at, wall_start, services, reporter) -> dict:

    deadline = time.monotonic() + settings.run_timeout_seconds
    note, note_at = "", 0.0
    counts: dict | None = None
    with open_instance(home) as instance:
        while True:
            services.check_alive()
            records = _runs_since(instance, started_at)
            crawl = instance.get_run_by_id(crawl_run_id)
            counts, fresh = watch_counts(settings, counts)
            if fresh and time.monotonic() >= note_at:  # one more read of the store, every 5 s
                with contextlib.suppress(StoreLockedError):
                    note = reindex_note(settings, counts["files"])
                note_at = time.monotonic() + 5
            reporter.sample(Progress(time.time() - wall_start, counts, len(records), note))
            ingest = [r for r in records if r.dagster_run.tags.get(LANE_TAG) == LANE_INGEST]
            in_flight = any(r.dagster_run.status.value not in FINISHED for r in ingest)
            if crawl is not None and crawl.status.value in FINISHED and not in_flight:
                waiting = _awaiting_ingestion(settings, instance, wall_start)
                waiting |= set(read_removals(settings.raw_dir))  # the prune run is still to come
                retry_pending, failed = _failed_runs(ingest, time.time())
                if not waiting and not retry_pending:
                    break
                if waiting and failed:
                    raise RunFailedError(
                        f"{len(waiting)} item(s) were not ingested; failed runs: {failed} "
                        "(see them in the Dagster UI: make dev)"
                    )
            if time.monotonic() > deadline:
                raise RunFailedError(
                    f"not finished after RUN_TIMEOUT_SECONDS={settings.run_timeout_seconds}"
                )
            time.sleep(1.0)
        records = _runs_since(instance, started_at)
        ingest = [r for r in records if r.dagster_run.tags.get(LANE_TAG) == LANE_INGEST]
        figures = _embedding_figures(instance, records)
        first_embedding = figures["first_stored_at"]
        final_failures = sum(_failed_runs(ingest, time.time()), [])
        crawl_status = crawl.status.value
    counts = store_counts(settings.raw_dir, settings.duckdb_path).as_dict()
    new_mtimes = [
        mtime_ns / 1e9 for _, mtime_ns in scan_item_files(settings.raw_dir)
        if mtime_ns / 1e9 >= wall_start
    ]  # fmt: skip
    first_file = min(new_mtimes) if new_mtimes else None
    refusal = read_refusal(settings.raw_dir)
    return {
        **crawl_problems(settings, wall_start),
        "prune_refused": (
            describe_refusal(refusal) if refusal and refusal.get("at", 0) >= wall_start else ""
        ),
        **counts,
        "pages": counts["files"],
        "wall_time_s": round(time.time() - wall_start, 1),
        "dagster_runs": len(records),
        "ingestion_runs": sum(1 for r in ingest if r.dagster_run.job_name == INGEST_JOB),
        "chunks_embedded": figures["embedded"],
        "chunks_reused": figures["reused"],
        "failed_runs": len(final_failures),
        "crawl_status": crawl_status,
        "first_file_to_first_embedding_s": (
            round(first_embedding - first_file, 1) if first_embedding and first_file else None
        ),
    }
