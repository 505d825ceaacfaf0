"""One session per data folder, and nothing left behind (issue 10, point 4; point 5's grep).

The end-to-end tests run the real ``rag run`` (real daemon, embedding server, crawl) and tag
it with an environment variable of their own, inherited by every process it starts, to find
whatever it left running.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from rag_app.runner import free_port
from rag_app.session import SessionLock, SessionLockedError, session_processes
from rag_core.settings import PROJECT_ROOT
from tests.helpers import static_site

TAG = "RAG_TEST_TAG"


def tagged(tag: str) -> list[int]:
    """Live processes carrying ``RAG_TEST_TAG=tag`` in their environment."""
    marker = f"{TAG}={tag}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry.name}/environ").read_bytes()
            state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if marker in environ.split(b"\0") and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def wait_until(predicate, timeout_s: float, step: float = 0.3) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def describe(pids: list[int]) -> str:
    lines = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            cmd = "?"
        lines.append(f"{pid}: {cmd[:160]}")
    return "\n".join(lines)


# -- the lock ---------------------------------------------------------------------------------


@pytest.mark.unit
def test_a_second_session_on_the_folder_fails_at_once_naming_the_holder(tmp_path):
    first = SessionLock(tmp_path, "rag run").acquire()
    started = time.monotonic()
    with pytest.raises(SessionLockedError, match=rf"in use by rag run \(pid {os.getpid()}"):
        SessionLock(tmp_path, "rag dev").acquire()
    assert time.monotonic() - started < 1.0
    first.release()
    SessionLock(tmp_path, "rag dev").acquire().release()  # free again once released


@pytest.mark.unit
def test_a_loser_that_races_the_holder_s_record_still_names_the_holder(tmp_path):
    """The holder takes the lock before it writes who it is; a session refused in that
    window (an empty record, or the record of the dead session before) must still name
    the live holder, not "another session" (a CI failure of two simultaneous runs)."""
    path = tmp_path / ".session.lock"
    path.write_text(json.dumps({"pid": 999_999_999, "command": "rag dev"}))  # dead, stale
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the holder, before its record

    def write_record():
        time.sleep(0.3)
        record = {"pid": os.getpid(), "command": "rag run", "started": "now"}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)

    writer = threading.Thread(target=write_record)
    writer.start()
    try:
        with pytest.raises(SessionLockedError, match=rf"in use by rag run \(pid {os.getpid()}"):
            SessionLock(tmp_path, "rag run").acquire()
    finally:
        writer.join()
        os.close(fd)


SESSION_SCRIPT = """
import os, subprocess, sys, time
from rag_app.session import SESSION_ENV, SessionLock
lock = SessionLock(sys.argv[1], "rag run").acquire()
env = {**os.environ, SESSION_ENV: lock.session_id}
# A service in a session of its own, as the daemon and the embedding server are.
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env,
                 start_new_session=True)
print(lock.session_id, flush=True)
time.sleep(600)
"""


def test_the_lock_of_a_killed_session_is_taken_over_and_its_orphans_reaped(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", SESSION_SCRIPT, str(tmp_path)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    session_id = proc.stdout.readline().strip()
    assert wait_until(lambda: session_processes(session_id), 10)
    proc.kill()
    proc.wait()
    orphans = session_processes(session_id)
    assert orphans, "the service should outlive a SIGKILLed session"
    lock = SessionLock(tmp_path, "rag run").acquire()  # no error: the holder is dead
    try:
        assert sorted(lock.reap_previous(timeout_s=5)) == sorted(orphans)
        assert session_processes(session_id) == []
    finally:
        lock.release()


# -- real `rag run` sessions ------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("session-site")
    links = "".join(f'<a href="/p{i}.html">page {i}</a> ' for i in range(30))
    (root / "index.html").write_text(f"<html><title>Home</title><body>{links}</body></html>")
    for i in range(30):
        (root / f"p{i}.html").write_text(
            f"<html><title>Page {i}</title><body><h1>Page {i}</h1>"
            + f"<p>Page {i} explains retries, crawling and embeddings in some detail.</p>" * 5
            + "</body></html>"
        )
    # Pages trickle in: the session is mid-flight when killed.
    with static_site(root, delay_s=0.3) as served:
        yield served.netloc


def start_rag_run(data: Path, tag: str, start_url: str, **env: str) -> subprocess.Popen:
    full = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DAGSTER") and k not in ("EMBEDDING_SERVER_URL", "START_URLS")
    }
    full.update(
        DATA_DIR=str(data),
        DUCKDB_PATH=str(data / "rag.duckdb"),
        DEMO_SITE_PORT=str(free_port()),
        START_URLS=start_url,
        **{TAG: tag, "CRAWL_CONCURRENCY": "2", "RUN_TIMEOUT_SECONDS": "400", **env},
    )
    return subprocess.Popen(
        [sys.executable, "-m", "rag_app.cli", "run"],
        cwd=PROJECT_ROOT,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen, text: str, timeout_s: float = 180) -> list[str]:
    """Read ``proc``'s stdout until a line contains ``text``; return the lines read."""
    lines: list[str] = []
    found = threading.Event()

    def reader():
        for line in proc.stdout:
            lines.append(line)
            if text in line:
                found.set()
                return

    threading.Thread(target=reader, daemon=True).start()
    assert found.wait(timeout_s), "".join(lines)[-3000:]
    return lines


def stop_and_check_nothing_left(proc: subprocess.Popen, signum: int, tag: str) -> str:
    running = tagged(tag)
    assert len(running) >= 4, describe(running)  # rag run, daemon, server, code server...
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 128 + signum, err[-2000:]
    assert wait_until(lambda: not tagged(tag), 30), describe(tagged(tag))
    return err


@pytest.mark.e2e
def test_two_runs_at_once_exactly_one_proceeds_and_sigterm_leaves_nothing(tmp_path, site):
    data, tag = tmp_path / "data", uuid.uuid4().hex
    first = start_rag_run(data, tag, f"http://{site}/")
    second = start_rag_run(data, tag, f"http://{site}/")
    losers = []
    for proc in (first, second):
        try:
            proc.wait(timeout=20)
            losers.append(proc)
        except subprocess.TimeoutExpired:
            pass
    assert len(losers) == 1, "exactly one of two simultaneous sessions must be refused"
    loser = losers[0]
    winner = second if loser is first else first
    err = loser.stderr.read()
    assert loser.returncode == 1 and "is in use by rag run (pid" in err, err
    wait_for_line(winner, "queued")
    time.sleep(3)  # the crawl run is being launched: daemon, code server, run worker
    err = stop_and_check_nothing_left(winner, signal.SIGTERM, tag)
    assert "stopped by SIGTERM" in err


@pytest.mark.e2e
def test_sighup_leaves_nothing_behind(tmp_path, site):
    data, tag = tmp_path / "data", uuid.uuid4().hex
    proc = start_rag_run(data, tag, f"http://{site}/")
    wait_for_line(proc, "queued")
    time.sleep(3)
    err = stop_and_check_nothing_left(proc, signal.SIGHUP, tag)
    assert "stopped by SIGHUP" in err


def code_servers(tag: str) -> list[int]:
    """The session's Dagster code server processes (`dagster api grpc`, or the proxy of
    `dagster code-server start`)."""
    found = []
    for pid in tagged(tag):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if " api grpc" in cmd or " code-server start" in cmd:
            found.append(pid)
    return found


@pytest.mark.e2e
def test_a_session_keeps_one_code_server_through_the_daemon_s_workspace_reloads(tmp_path):
    """Issue 13 (P5a/P5b): given the repository's `python_module` workspace the daemon ran a
    code server of its own and started another at every workspace reload (every 60 s) while
    the old one lived on with the runs it launched, and the crawl launch loaded a third."""
    from dagster._daemon.controller import RELOAD_WORKSPACE_INTERVAL

    root = tmp_path / "www"
    pages = 40
    links = "".join(f'<a href="/p{i}.html">page {i}</a> ' for i in range(pages))
    root.mkdir()
    (root / "index.html").write_text(f"<html><title>Home</title><body>{links}</body></html>")
    for i in range(pages):
        (root / f"p{i}.html").write_text(
            f"<html><title>Page {i}</title><body><h1>Page {i}</h1>"
            + f"<p>Page {i} explains retries, crawling and embeddings.</p>" * 5
            + "</body></html>"
        )
    data, tag = tmp_path / "data", uuid.uuid4().hex
    # One request at a time, 2.5 s each: the crawl (and the session) outlives the reload.
    with static_site(root, delay_s=2.5) as served:
        proc = start_rag_run(data, tag, f"http://{served.netloc}/", CRAWL_CONCURRENCY="1")
        wait_for_line(proc, "queued")
        seen: set[int] = set()
        most = 0
        until = time.monotonic() + RELOAD_WORKSPACE_INTERVAL + 20
        while time.monotonic() < until:
            assert proc.poll() is None, "the session ended before the daemon's workspace reload"
            now = code_servers(tag)
            seen.update(now)
            most = max(most, len(now))
            time.sleep(0.5)
        assert most == 1 and len(seen) == 1, describe(sorted(seen))
        stop_and_check_nothing_left(proc, signal.SIGTERM, tag)


SECRET = "s3cr3t-Pa55word"


@pytest.mark.e2e
def test_sigkill_orphans_are_reaped_and_a_run_with_credentials_completes_leaking_nothing(
    tmp_path, site
):
    data, tag = tmp_path / "data", uuid.uuid4().hex
    killed = start_rag_run(data, tag, f"http://{site}/")
    wait_for_line(killed, "queued")
    time.sleep(3)
    killed.kill()  # no clean-up can run
    killed.communicate(timeout=30)
    orphans = tagged(tag)
    assert orphans, "SIGKILL leaves the services running (nothing can stop them)"

    # The next session reaps them, takes the lock over and completes. Its start URL carries
    # credentials, which must appear in no output, log, metadata or store (point 5).
    url = f"http://crawler:{SECRET}@{site}/"
    proc = start_rag_run(data, tag, url, CLOSESPIDER_PAGECOUNT="8")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, (out + err)[-4000:]
    assert "left running by a killed earlier session" in out
    assert not set(orphans) & set(tagged(tag))
    assert wait_until(lambda: not tagged(tag), 30), describe(tagged(tag))

    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER")}
    env.update(DATA_DIR=str(data), DUCKDB_PATH=str(data / "rag.duckdb"), START_URLS=url)
    status = subprocess.run(
        [sys.executable, "-m", "rag_app.cli", "status", "--json", "--errors"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["counts"]["embeddings"] > 0
    leaks = [name for name, text in (("rag run stdout", out), ("rag run stderr", err),
                                     ("rag status", status.stdout + status.stderr))
             if SECRET in text]  # fmt: skip
    # Every file of the session: item files, DuckDB, crawl stats, service logs, the Dagster
    # instance (event log, run storage, snapshots, compute logs), compressed or not.
    for path in data.rglob("*"):
        if path.is_file() and contains_secret(path.read_bytes()):
            leaks.append(str(path.relative_to(data)))
    assert not leaks, leaks


def contains_secret(blob: bytes) -> bool:
    """The secret in ``blob``, plainly or inside a zlib/gzip-compressed stretch of it."""
    import zlib

    needle = SECRET.encode()
    if needle in blob:
        return True
    for start in range(len(blob) - 1):  # zlib streams start with 0x78 (deflate, 32K window)
        if blob[start] == 0x78 and blob[start + 1] in (0x01, 0x5E, 0x9C, 0xDA):
            try:
                if needle in zlib.decompressobj().decompress(blob[start:], 10_000_000):
                    return True
            except zlib.error:
                continue
    return False


# A session started from a shell that ignores SIGINT (`rag run &` in a script, nohup in a
# script, CI): its code server is stopped by the session and must exit by itself.
STOP_WITH_SIGINT_IGNORED = """
import json, signal, sys
from pathlib import Path
signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a non-interactive shell's `&` leaves it
from rag_app.runner import session, start_code_server, wait_for_code_server
from rag_core.settings import child_environment
from tests.helpers import settings_for
settings = settings_for(Path(sys.argv[1]))
with session(settings, "test") as services:
    server = start_code_server(settings, services, child_environment(settings))
    wait_for_code_server(server, services)
    [(name, process)] = services.processes
print(json.dumps({"name": name, "returncode": process.returncode}))
"""


@pytest.mark.e2e
def test_a_session_started_with_sigint_ignored_still_stops_its_code_server_cleanly(tmp_path):
    """Dagster's code server maps SIGTERM to whatever SIGINT does, and a process started
    with SIGINT ignored (a background job of a non-interactive shell) keeps ignoring it:
    every `rag run` so started waited the 20 s stop timeout and then SIGKILLed its code
    server (bench: 30 s between the last progress line and the summary at N=500)."""
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", STOP_WITH_SIGINT_IGNORED, str(tmp_path / "data")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"name": "code-server", "returncode": 0}, (result, time.monotonic() - started)
