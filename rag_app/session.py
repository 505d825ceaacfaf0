"""One session per data folder, and nothing left behind when it ends.

A session (``rag run``, ``rag dev``) holds an OS file lock on ``DATA_DIR/.session.lock``
for its whole life. The kernel releases the lock when the holder dies, however it dies, so
a lock left by a dead session is taken over without anyone deleting a file. A second
session on the same folder fails at once, naming the holder recorded in the lock file.

Every process a session starts, and everything those start in turn (the Dagster code
server and daemon, run workers, the crawl, the embedding server), inherits the environment
variable ``RAG_SESSION_ID``. That is how a session finds all of its processes again,
whichever process group or session they moved to: on a signal it stops them, and the next
session stops what a SIGKILLed one (which could run no clean-up) left behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".session.lock"
SESSION_ENV = "RAG_SESSION_ID"


class SessionLockedError(RuntimeError):
    """Another live session holds the data folder."""


class SessionInterruptedError(Exception):
    """The session received SIGTERM or SIGHUP; its processes are being stopped."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class SessionLock:
    """The exclusive lock of one session on a data folder (``fcntl.flock``)."""

    def __init__(self, data_dir: Path, command: str):
        self.path = Path(data_dir) / LOCK_NAME
        self.command = command
        self.session_id = uuid.uuid4().hex
        self.previous: dict = {}
        self._fd: int | None = None

    def acquire(self) -> SessionLock:
        """Take the lock or raise SessionLockedError naming the live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _live_holder_record(fd)
            os.close(fd)
            who = (
                f"{holder.get('command', 'a session')} (pid {holder.get('pid', '?')}, "
                f"started {holder.get('started', '?')})"
                if holder
                else "another session"
            )
            raise SessionLockedError(
                f"the data folder {self.path.parent} is in use by {who}: stop it first, "
                "or set DATA_DIR to another folder"
            ) from None
        # Whatever is recorded here belongs to a session that is gone (it no longer holds
        # the lock): its processes, if any survived it, are reaped by ``reap_previous``.
        self.previous = _read_record(fd)
        self._fd = fd
        record = {
            "pid": os.getpid(),
            "command": self.command,
            "session_id": self.session_id,
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        os.fsync(fd)
        return self

    def reap_previous(self, timeout_s: float = 20.0) -> list[int]:
        """Stop every process a dead earlier session left running; return their pids."""
        previous = self.previous.get("session_id")
        if not previous or previous == self.session_id:
            return []
        return stop_session_processes(previous, timeout_s)

    def release(self) -> None:
        """Give the lock up (the record stays, naming the last session, for diagnosis)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _live_holder_record(fd: int, wait_s: float = 2.0) -> dict:
    """The record of the session holding the lock, or {} if it never shows up.

    The holder takes the lock a moment before it writes its record, so a session refused
    in that window reads nothing, or the record of the dead session before it. It waits
    (briefly: the holder writes right after locking) for a record naming a live process.
    """
    deadline = time.monotonic() + wait_s
    while True:
        record = _read_record(fd)
        if _pid_alive(record.get("pid")):
            return record
        if time.monotonic() >= deadline:
            return {}
        time.sleep(0.02)


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def _read_record(fd: int) -> dict:
    try:
        data = os.pread(fd, 65536, 0)
        record = json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def session_processes(session_id: str) -> list[int]:
    """Pids of the live processes (of this user) started by the session ``session_id``."""
    marker = f"{SESSION_ENV}={session_id}".encode()
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:  # gone meanwhile, or another user's process
            continue
        if marker in environ.split(b"\0") and not _is_zombie(int(entry.name)):
            found.append(int(entry.name))
    return found


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def stop_session_processes(session_id: str, timeout_s: float = 20.0) -> list[int]:
    """SIGTERM every process of ``session_id``, SIGKILL those still there after ``timeout_s``."""
    pids = session_processes(session_id)
    if not pids:
        return []
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = session_processes(session_id)
        if not left:
            return pids
        time.sleep(0.2)
    left = session_processes(session_id)
    _signal_all(left, signal.SIGKILL)
    # A SIGKILLed process is gone once the kernel reaps it; wait briefly so callers see it.
    deadline = time.monotonic() + 5.0
    while session_processes(session_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pids


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into SessionInterruptedError for the enclosed block.

    Without this the default action kills ``rag run`` outright: no ``finally`` runs, and the
    daemon and embedding server (in sessions of their own) are left running. Only the first
    signal raises: a second one while the session is stopping its processes is ignored, so
    the clean-up itself is not interrupted.
    """
    raised = False

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        nonlocal raised
        if raised:
            return
        raised = True
        raise SessionInterruptedError(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        raised = True  # from here on, clean-up runs to the end
        for sig, old in previous.items():
            signal.signal(sig, old)
