"""Resource that runs the Scrapy crawl in a subprocess and streams its log.

Twisted's reactor cannot be restarted inside one process, so every crawl is a
fresh ``python -m crawler`` process; its stderr is forwarded line by line to the
Dagster run's log, and its statistics come back as a JSON file.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from demo_site.serve import serve_demo_site
from rag_core.redact import mask_secrets, unmask_urls
from rag_core.settings import PROJECT_ROOT, default, secret

# A crawl process killed on its own is restarted (from its JOBDIR) this many times. SIGTERM
# and SIGINT are not among the signals: they mean "stop" (the run or `rag run` is stopping).
CRAWL_RESTARTS = 2
RESTART_SIGNALS = {signal.SIGKILL, signal.SIGSEGV, signal.SIGBUS}


def _terminate_with_parent() -> None:
    """In the crawl child: get SIGTERM when the run process dies, even by SIGKILL.

    Scrapy stops gracefully on SIGTERM and keeps its JOBDIR state, so the retried run resumes
    the crawl instead of racing an orphaned one.
    """
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _stop_gracefully(process: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """Stop a crawl still running (the run was cancelled): SIGTERM first, SIGKILL last."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _masked(log_line: Callable[[str], None]) -> Callable[[str], None]:
    # The crawl's own log is masked already; this also covers anything else it prints.
    return lambda line: log_line(mask_secrets(line))


def _url_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class CrawlFailedError(RuntimeError):
    """The crawl process exited with an error."""


class ScrapyCrawler(dg.ConfigurableResource):
    """Scrapy crawl of a site into item files; empty ``start_urls`` = the bundled demo site."""

    raw_dir: str
    state_dir: str
    start_urls: list[str] = []
    allowed_domains: list[str] = []
    max_pages: int = 0
    depth_limit: int = 0
    include: list[str] = []
    exclude: list[str] = []
    concurrency: int = default("CRAWL_CONCURRENCY")
    autothrottle: bool = False
    max_page_chars: int = default("MAX_PAGE_CHARS")
    log_level: str = "INFO"
    demo_site_port: int = default("DEMO_SITE_PORT")
    prune_removed: bool = False
    allow_private_networks: bool = False
    max_download_bytes: int = default("CRAWL_MAX_DOWNLOAD_BYTES")
    max_links_per_page: int = default("CRAWL_MAX_LINKS_PER_PAGE")
    max_url_length: int = default("CRAWL_MAX_URL_LENGTH")
    prune_after_misses: int = 2
    prune_max_fraction: float = 0.2
    prune_confirm: bool = False
    priority_rules: str = ""
    sitemaps: bool = False
    # Backpressure: pause while this many item files wait for ingestion on ``dagster_home``.
    max_pending_items: int = 0
    dagster_home: str = ""

    @property
    def stats_file(self) -> Path:
        return Path(self.state_dir) / "last_crawl_stats.json"

    @property
    def jobdir(self) -> Path:
        return Path(self.state_dir) / "jobdir"

    @property
    def seen_keys_file(self) -> Path:
        return Path(self.state_dir) / "seen_keys.txt"

    def command(self, start_urls: list[str], max_pages: int) -> list[str]:
        """The ``python -m crawler`` command line for this configuration."""
        cmd = [sys.executable, "-m", "crawler", "--raw-dir", self.raw_dir]
        for url in start_urls:
            cmd += ["--start-url", url]
        for domain in self.allowed_domains:
            cmd += ["--allowed-domain", domain]
        for pattern in self.include:
            cmd += ["--include", pattern]
        for pattern in self.exclude:
            cmd += ["--exclude", pattern]
        cmd += [
            "--max-pages",
            str(max_pages),
            "--depth-limit",
            str(self.depth_limit),
            "--max-page-chars",
            str(self.max_page_chars),
            "--concurrency",
            str(self.concurrency),
            "--log-level",
            self.log_level,
            "--stats-file",
            str(self.stats_file),
            "--jobdir",
            str(self.jobdir),
            "--seen-keys-file",
            str(self.seen_keys_file),
        ]
        cmd += [
            "--max-download-bytes",
            str(self.max_download_bytes),
            "--max-links-per-page",
            str(self.max_links_per_page),
            "--max-url-length",
            str(self.max_url_length),
        ]
        if self.autothrottle:
            cmd.append("--autothrottle")
        if self.allow_private_networks:
            cmd.append("--allow-private-networks")
        if self.priority_rules:
            cmd += ["--priority-rules", self.priority_rules]
        if self.sitemaps:
            cmd.append("--sitemaps")
        if self.max_pending_items and self.dagster_home:
            cmd += ["--max-pending-items", str(self.max_pending_items)]
            cmd += ["--dagster-home", self.dagster_home]
        return cmd

    def crawl(
        self,
        log_line: Callable[[str], None],
        start_urls: list[str] | None = None,
        max_pages: int | None = None,
    ) -> dict:
        """Run one crawl to the end, forwarding its log; return Scrapy's statistics."""
        # Configured URLs are masked (user:password@ -> ***@); the crawl needs the originals.
        urls = unmask_urls(list(start_urls or self.start_urls), _url_list(secret("START_URLS")))
        log_line = _masked(log_line)
        pages = self.max_pages if max_pages is None else max_pages
        Path(self.state_dir).mkdir(parents=True, exist_ok=True)
        self.stats_file.unlink(missing_ok=True)
        resumed = self.jobdir.is_dir() and any(self.jobdir.iterdir())
        if resumed:
            log_line(f"resuming the interrupted crawl from {self.jobdir}")
        else:
            self.seen_keys_file.unlink(missing_ok=True)
        with contextlib.ExitStack() as stack:
            if not urls:
                urls = [stack.enter_context(serve_demo_site(self.demo_site_port))]
            cmd = self.command(urls, pages)
            log_line(f"starting crawl of {', '.join(urls)}")
            for restart in range(CRAWL_RESTARTS + 1):
                code = self._run_crawl_process(cmd, log_line)
                if -code not in RESTART_SIGNALS or restart == CRAWL_RESTARTS:
                    break
                # Killed alone (the OOM killer, an operator), not with its run: the JOBDIR
                # holds its state, so the crawl goes on from there instead of failing the run.
                # A resumed crawl is never a complete one, so it never prunes.
                resumed = True
                log_line(
                    f"the crawl process was killed by {signal.Signals(-code).name}; "
                    f"restarting it from {self.jobdir} ({restart + 1} of {CRAWL_RESTARTS})"
                )
        if code != 0:
            raise CrawlFailedError(f"crawl exited with code {code}; see the log above")
        # A finished crawl must not resume from its JOBDIR next time (it would skip every
        # page as already seen); only a killed crawl leaves it behind to resume from.
        shutil.rmtree(self.jobdir, ignore_errors=True)
        stats = json.loads(self.stats_file.read_text()) if self.stats_file.is_file() else {}
        stats["start_urls"] = [mask_secrets(url) for url in urls]
        stats["resumed"] = resumed
        # Ran to the end from scratch; whether that makes it a *complete* crawl (one whose
        # misses may prune) also depends on failed requests: rag_core.prune.CrawlEvidence.
        stats["ran_to_end"] = (
            not resumed and pages == 0 and stats.get("finish_reason") == "finished"
        )
        return stats

    @staticmethod
    def _run_crawl_process(cmd: list[str], log_line: Callable[[str], None]) -> int:
        """Run one crawl process to its end, forwarding its log; return its exit code."""
        process = subprocess.Popen(
            cmd,
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            preexec_fn=_terminate_with_parent,
        )
        try:
            assert process.stdout is not None
            for line in process.stdout:
                log_line(line.rstrip())
            return process.wait()
        finally:
            _stop_gracefully(process)

    def seen_keys(self) -> set[str]:
        """Item keys of every page the last crawl reached (changed or not)."""
        if not self.seen_keys_file.is_file():
            return set()
        return {line.strip() for line in self.seen_keys_file.read_text().splitlines() if line}
