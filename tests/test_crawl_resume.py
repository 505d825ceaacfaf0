"""A crawl killed mid-way resumes from Scrapy's JOBDIR instead of starting over."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from resources.scrapy_crawler import ScrapyCrawler

PAGES = 24


class CountingSite(BaseHTTPRequestHandler):
    """Pages 0..N-1 in a chain (each links to the next), 150 ms each; counts every request."""

    hits: collections.Counter = collections.Counter()

    def do_GET(self):  # noqa: N802
        CountingSite.hits[self.path] += 1
        if self.path == "/robots.txt":
            body, kind = b"User-agent: *\nAllow: /\n", "text/plain"
        elif self.path.startswith("/p") and self.path[2:].isdigit() and int(self.path[2:]) < PAGES:
            n = int(self.path[2:])
            time.sleep(0.15)
            body = (
                f"<html><head><title>P{n}</title></head><body><main><h1>Page {n}</h1>"
                f"<p>Text of page {n}.</p><a href='/p{n + 1}'>next</a></main></body></html>"
            ).encode()
            kind = "text/html"
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def site():
    CountingSite.hits.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), CountingSite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/p0"
    server.shutdown()


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
from resources.scrapy_crawler import ScrapyCrawler
crawler = ScrapyCrawler.model_validate_json(sys.argv[1])
crawler.crawl(lambda line: None)
"""


def test_crawl_killed_with_its_run_process_resumes_where_it_stopped(tmp_path, site):
    crawler = crawler_for(tmp_path, site)
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
    pages = {path: n for path, n in CountingSite.hits.items() if path.startswith("/p")}
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
