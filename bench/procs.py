"""Child processes of the benchmark: started in their own session, sampled, and always killed.

``Tracked`` runs one command, samples the summed RSS of its whole process tree every
0.2 s (the process and all its descendants, found again at every sample, so the Dagster
daemon's code server and run workers, the embedding server and the crawler count), keeps
its stdout with a timestamp per line, and on ``stop()`` kills every process of the tree it
ever saw, even those that ``start_new_session`` detached from the process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SAMPLE_INTERVAL_S = 0.2


def _short_name(proc: psutil.Process) -> str:
    """A readable role for a process of the tree (for the RSS breakdown at the peak)."""
    try:
        cmd = proc.cmdline()
    except (psutil.Error, OSError):
        return "?"
    text = " ".join(cmd)
    for marker, name in (
        ("rag_app.embedding_server", "embedding-server"),
        ("dagster-daemon", "dagster-daemon"),
        ("api grpc", "code-server"),
        ("api execute_run", "run-worker"),
        ("execute_run", "run-worker"),
        # DefaultRunLauncher: the code server starts each run as a multiprocessing child.
        ("multiprocessing.spawn", "run-worker"),
        ("-m crawler", "crawler"),
        ("rag_app.cli", "rag-run"),
        ("dagster job launch", "job-launch"),
        ("bench.baseline", "baseline"),
        ("bench.encode_only", "encode-only"),
    ):
        if marker in text:
            return name
    return Path(cmd[0]).name if cmd else "?"


@dataclass
class Tracked:
    """One child process tree under measurement."""

    name: str
    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    started: float = 0.0
    ended: float = 0.0
    returncode: int | None = None
    peak_rss: int = 0
    peak_breakdown: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    load_start: float = 0.0
    load_end: float = 0.0
    lines: list[tuple[float, str]] = field(default_factory=list)
    _proc: subprocess.Popen | None = None
    _seen: dict[tuple[int, float], psutil.Process] = field(default_factory=dict)
    _cpu: dict[tuple[int, float], float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Tracked:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.load_start = os.getloadavg()[0]
        self.started = time.time()
        self._proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        for target in (self._read_output, self._sample):
            thread = threading.Thread(target=target, daemon=True, name=f"{self.name}-{target}")
            thread.start()
            self._threads.append(thread)
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def _read_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        with open(self.log_path, "w") as log:
            for line in self._proc.stdout:
                now = time.time()
                self.lines.append((now, line.rstrip("\n")))
                log.write(f"{now - self.started:8.2f} {line}")
                log.flush()

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                self._seen.setdefault((proc.pid, proc.create_time()), proc)
        return procs

    def _sample(self) -> None:
        while not self._stop.is_set():
            total, breakdown, counts = 0, {}, {}
            for proc in self._tree():
                try:
                    with proc.oneshot():
                        rss = proc.memory_info().rss
                        cpu = proc.cpu_times()
                        ident = (proc.pid, proc.create_time())
                except psutil.Error:
                    continue
                self._cpu[ident] = max(self._cpu.get(ident, 0.0), cpu.user + cpu.system)
                total += rss
                role = _short_name(proc)
                breakdown[role] = breakdown.get(role, 0) + rss
                counts[role] = counts.get(role, 0) + 1
            if total:
                self.samples += 1
                if total > self.peak_rss:
                    self.peak_rss = total
                    self.peak_breakdown = {
                        (f"{role} x{counts[role]}" if counts[role] > 1 else role): rss
                        for role, rss in breakdown.items()
                    }
            if self._proc is not None and self._proc.poll() is not None:
                break
            self._stop.wait(SAMPLE_INTERVAL_S)

    def wait(self, timeout_s: float) -> int | None:
        """Wait for the root process; on timeout kill the tree and return None."""
        assert self._proc is not None
        try:
            self.returncode = self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.returncode = None
        self.ended = time.time()
        self.load_end = os.getloadavg()[0]
        self.stop()
        return self.returncode

    @property
    def cpu_s(self) -> float:
        """CPU seconds (user + system) of every process of the tree, as last sampled."""
        return sum(self._cpu.values())

    @property
    def wall_s(self) -> float:
        return (self.ended or time.time()) - self.started

    def stop(self) -> None:
        """Terminate every process of the tree ever seen (SIGTERM, then SIGKILL after 15 s)."""
        self._stop.set()
        self._tree()
        alive = [p for p in self._seen.values() if _running(p)]
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, still = psutil.wait_procs(alive, timeout=15)
        for proc in still:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(still, timeout=5)
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        for thread in self._threads:
            thread.join(timeout=5)

    def first_line_time(self, text: str) -> float | None:
        """Epoch of the first output line containing ``text``."""
        return next((t for t, line in self.lines if text in line), None)

    def tail(self, n: int = 15) -> str:
        return "\n".join(line for _, line in self.lines[-n:])


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Registry:
    """Every tree the benchmark started; ``stop_all`` in a ``finally`` leaves nothing behind."""

    def __init__(self) -> None:
        self.tracked: list[Tracked] = []

    def run(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        timeout_s: float,
    ) -> Tracked:
        tracked = Tracked(name, cmd, env, cwd, log_path)
        self.tracked.append(tracked)
        tracked.start()
        tracked.wait(timeout_s)
        return tracked

    def stop_all(self) -> None:
        for tracked in self.tracked:
            with contextlib.suppress(Exception):
                tracked.stop()
