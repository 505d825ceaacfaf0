"""A crawl killed mid-way resumes from Scrapy's JOBDIR instead of starting over."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from resources.scrapy_crawler import ScrapyCrawler
from tests.helpers import fixed

PAGES = 24


def chain_page(n: int):
    """Page ``n`` of the chain (it links to the next one), served after 150 ms."""

    def route(_handler):
        time.sleep(0.15)
        body = (
            f"<html><head><title>P{n}</title></head><body><main><h1>Page {n}</h1>"
            f"<p>Text of page {n}.</p><a href='/p{n + 1}'>next</a></main></body></html>"
        ).encode()
        return 200, {"Content-Type": "text/html"}, body

    return route


@pytest.fixture
def site(http_server):
    """Pages 0..N-1 in a chain; the server records every request."""
    server = http_server()
    server.routes["/robots.txt"] = fixed(200, "text/plain", b"User-agent: *\nAllow: /\n")
    for n in range(PAGES):
        server.routes[f"/p{n}"] = chain_page(n)
    return server


def crawler_for(tmp_path, url) -> ScrapyCrawler:
    return ScrapyCrawler(
        raw_dir=str(tmp_path / "raw"),
        state_dir=str(tmp_path / "crawl"),
        start_urls=[url],
        concurrency=1,
        log_level="WARNING",
    )


PARENT = """
import sys
import threading
from resources.scrapy_crawler import ScrapyCrawler
crawler = ScrapyCrawler.model_validate_json(sys.argv[1])
crawler.crawl(lambda line: None)
"""


def test_crawl_killed_with_its_run_process_resumes_where_it_stopped(tmp_path, site):
    crawler = crawler_for(tmp_path, site.url("/p0"))
    # A stand-in for the Dagster run process: it runs the crawl as the crawl asset does.
    parent = subprocess.Popen([sys.executable, "-c", PARENT, crawler.model_dump_json()])
    raw = tmp_path / "raw"
    deadline = time.monotonic() + 60
    while len(list(raw.glob("item_*.json"))) < 6 and time.monotonic() < deadline:
        time.sleep(0.1)
    children = psutil.Process(parent.pid).children(recursive=True)
    os.kill(parent.pid, signal.SIGKILL)  # no cleanup code of the parent runs
    parent.wait()
    # The crawl child gets SIGTERM on its parent's death and stops, keeping its JOBDIR.
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, "the crawl outlived its run process"
    first_part = {p.name: p.stat().st_mtime_ns for p in raw.glob("item_*.json")}
    assert 6 <= len(first_part) < PAGES
    assert crawler.jobdir.is_dir()

    stats = crawler.crawl(lambda line: None)

    assert stats["resumed"] is True and stats["ran_to_end"] is False
    files = {p.name: p.stat().st_mtime_ns for p in raw.glob("item_*.json")}
    assert len(files) == PAGES
    # Resumed, not restarted: no page was fetched twice, the first part was not rewritten.
    pages = {path: n for path, n in collections.Counter(site.paths()).items() if path[:2] == "/p"}
    assert len(pages) == PAGES + 1  # the chain ends with a link to a missing page
    assert max(pages.values()) == 1
    assert all(files[name] == mtime for name, mtime in first_part.items())
    # Every page of both parts is recorded as seen (pruning relies on it).
    assert len(crawler.seen_keys()) == PAGES
    # A finished crawl leaves no JOBDIR behind: the next one starts from scratch.
    assert not crawler.jobdir.exists()
    again = crawler.crawl(lambda line: None)
    assert again["resumed"] is False and again["ran_to_end"] is True
    assert again["items_unchanged"] == PAGES and again["items_saved"] == 0


def test_crawl_process_killed_alone_is_restarted_and_resumes(tmp_path, site):
    """The OOM killer (or anyone) SIGKILLs the crawl process but not its run: the crawl
    restarts from its JOBDIR instead of failing the run (the soak test saw `rag run` exit 1)."""
    crawler = crawler_for(tmp_path, site.url("/p0"))
    raw = tmp_path / "raw"
    killed = []

    def kill_the_crawl_once():
        deadline = time.monotonic() + 60
        while len(list(raw.glob("item_*.json"))) < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
        for child in psutil.Process().children(recursive=True):
            if "crawler" in " ".join(child.cmdline()):
                child.send_signal(signal.SIGKILL)
                killed.append(child.pid)

    killer = threading.Thread(target=kill_the_crawl_once)
    killer.start()
    lines: list[str] = []
    stats = crawler.crawl(lines.append)
    killer.join()

    assert killed, "the test killed no crawl process"
    assert stats["resumed"] is True and stats["ran_to_end"] is False  # never prunes
    assert len(list(raw.glob("item_*.json"))) == PAGES
    assert any("restarting it" in line for line in lines), lines[-5:]
    assert not crawler.jobdir.exists()
