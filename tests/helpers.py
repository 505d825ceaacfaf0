"""Shared test helpers: item files, settings for a temporary data folder, small HTML pages,
local HTTP sites on free ports, and in-process Dagster runs over a partition range.

The fixtures built on these live in ``tests/conftest.py``. Dagster is imported inside the
functions that need it, so that unit tests importing this module stay fast.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rag_core.ids import canonical_url, item_key
from rag_core.items import CrawledItem, write_item_atomically
from rag_core.settings import Settings, load_settings


def settings_for(data_dir: Path, **env: str) -> Settings:
    """Settings whose data (raw files, DuckDB, instance) live under ``data_dir``."""
    values = {"DATA_DIR": str(data_dir), "DUCKDB_PATH": str(data_dir / "rag.duckdb")}
    values.update(env)
    return load_settings(values, dotenv=data_dir / "no.env")


def page_html(title: str, body: str) -> str:
    """A page with the boilerplate real sites have around its main content."""
    return (
        f"<html><head><title>{title} | Test Docs</title></head><body>"
        "<header><nav><a href='/'>Home</a> <a href='/docs'>Docs</a></nav></header>"
        f"<main><h1>{title}</h1>{body}</main>"
        "<footer>Copyright 2026 Test Docs. All rights reserved.</footer></body></html>"
    )


def write_page(raw_dir: Path, url: str, title: str, body: str, **fields) -> str:
    """Write one item file as the crawler would; return its partition key."""
    key = item_key(url)
    item = CrawledItem(
        item_id=key,
        url=canonical_url(url),
        status=200,
        html=page_html(title, body),
        title=title,
        content_type="text/html",
        **fields,
    )
    write_item_atomically(item, raw_dir)
    return key


def paragraphs(topic: str, count: int) -> str:
    """``count`` paragraphs of plain prose about ``topic``."""
    return "".join(
        f"<p>Paragraph {i} explains how {topic} works in practice, which settings matter, "
        f"and what to check when {topic} does not behave as expected on a small machine.</p>"
        for i in range(count)
    )


# -- ports and local HTTP sites -------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for servers that cannot be given port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# A route answers one GET: (status, headers, body). It gets the request handler (headers, path).
Route = Callable[[BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


def fixed(status: int, content_type: str, body: bytes, **extra: str) -> Route:
    """A route that always answers ``status`` with ``body`` (``extra``: more headers)."""
    headers = {"Content-Type": content_type, **extra}
    return lambda _handler: (status, headers, body)


@dataclass
class HttpServer:
    """A threaded HTTP server on 127.0.0.1 (free port) that records every request it sees.

    Paths in ``routes`` get their route's answer; other paths are served from
    ``static_root`` when given, else 404.
    """

    httpd: ThreadingHTTPServer
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)  # (Host header, path)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        """Port the server listens on."""
        return self.httpd.server_address[1]

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` on this server, addressed as 127.0.0.1."""
        return f"http://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        """Paths requested so far (query included)."""
        with self.lock:
            return [path for _, path in self.seen]

    def hits(self, path: str) -> int:
        """How many requests asked for ``path`` (query string ignored)."""
        return sum(1 for seen in self.paths() if seen.split("?", 1)[0] == path)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_http_server(static_root: Path | None = None) -> HttpServer:
    """Start an :class:`HttpServer` in a daemon thread; the caller stops it."""
    server: HttpServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            with server.lock:
                server.seen.append((self.headers.get("Host", ""), self.path))
            route = server.routes.get(self.path.split("?", 1)[0])
            if route is not None:
                status, headers, body = route(self)
            elif static_root is not None and (static_root / self.path.lstrip("/")).is_file():
                body = (static_root / self.path.lstrip("/")).read_bytes()
                status, headers = 200, {"Content-Type": "text/html; charset=utf-8"}
            else:
                status, headers, body = 404, {"Content-Type": "text/html"}, b"<h1>Not found</h1>"
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server = HttpServer(httpd)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return server


class StaticSiteHandler(SimpleHTTPRequestHandler):
    """Static files with latency (pages trickle in as from a real site) and a switchable mode:
    ``up``; ``down`` (503 to everything, as a site in an outage); ``orphaned`` (the home page
    has lost its links, so every other page looks removed)."""

    delay_s = 0.15
    mode: dict[str, str] = {"value": "up"}  # replaced per server by serve_directory

    def do_GET(self):  # noqa: N802 - http.server API
        threading.Event().wait(self.delay_s)
        mode = self.mode["value"]
        if mode == "down":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if mode == "orphaned" and self.path in ("/", "/index.html"):
            body = b"<html><head><title>Home</title></head><body><main><h1>Home</h1>"
            body += b"<p>Everything else moved away.</p></main></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@dataclass
class LocalSite:
    """A folder served over HTTP on a free port of 127.0.0.1."""

    root: Path
    server: ThreadingHTTPServer
    mode: dict[str, str]  # set mode["value"] to "down" or "orphaned" to change the site

    @property
    def url(self) -> str:
        """The site's start URL (ends in ``/``)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_static_site(root: Path, delay_s: float = 0.15) -> LocalSite:
    """Serve ``root`` in a daemon thread (each request waits ``delay_s``); the caller stops it."""
    mode = {"value": "up"}
    handler = type("Site", (StaticSiteHandler,), {"mode": mode, "delay_s": delay_s})
    server = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return LocalSite(root, server, mode)


@contextmanager
def static_site(root: Path, delay_s: float = 0.15) -> Iterator[LocalSite]:
    """:func:`start_static_site` for a ``with`` block (module-scoped fixtures use this)."""
    site = start_static_site(root, delay_s)
    try:
        yield site
    finally:
        site.stop()


def build_site(root: Path, pages: int) -> None:
    """A small docs site: an index linking every page, pages linking to their neighbours."""
    root.mkdir(parents=True)
    links = "".join(f'<li><a href="/p{i}.html">Page {i}</a></li>' for i in range(pages))
    nav = f"<nav><ul>{links}</ul></nav>"
    (root / "index.html").write_text(
        f"<html><head><title>Home</title></head><body>{nav}<main><h1>Home</h1>"
        "<p>Welcome to the test documentation for the ingestion platform.</p></main></body></html>"
    )
    for i in range(pages):
        body = "".join(
            f"<h2>Section {s}</h2><p>Page {i} section {s} describes topic {i * 7 + s} in detail; "
            "it covers installation, configuration, retries and troubleshooting. "
            * (1 + i % 5)
            + "</p>"
            for s in range(1 + i % 4)
        )
        (root / f"p{i}.html").write_text(
            f"<html><head><title>Page {i}</title></head><body>{nav}<main><h1>Page {i}</h1>"
            f'{body}<a href="/p{(i + 1) % pages}.html">next</a></main>'
            "<footer>Footer text</footer></body></html>"
        )


# -- in-process Dagster: sensor ticks and runs over a partition range ----------------------------

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def ingest_assets() -> list:
    """The ingestion assets: one multi-asset materialising raw_items, documents, chunks and
    embeddings in one step."""
    from rag_assets.ingest import ingest_batch

    return [ingest_batch]


def evaluate_sensor(instance, raw_dir: Path, cursor: str | None = None, sensor=None):
    """One tick of the item-file sensor (streaming unless ``sensor`` is given); its partition
    requests are applied to ``instance``, as the daemon does before launching the runs."""
    from sensors.raw_item_files import build_raw_item_files_sensor
    from sensors.testing import apply_partition_requests, raw_item_files_context

    sensor = sensor or build_raw_item_files_sensor("streaming")
    result = sensor(raw_item_files_context(instance, raw_dir, cursor=cursor))
    apply_partition_requests(instance, result)
    return result


def materialize_tags(
    instance,
    settings,
    tags: dict[str, str],
    *,
    assets=None,
    resources=None,
    selection=None,
    raise_on_error=True,
):
    """Materialise ``assets`` (default: the ingestion assets; ``selection`` of them) in-process
    with run ``tags``, using the project's resources for ``settings`` (``resources`` replaces
    some of them)."""
    import dagster as dg
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    from rag_assets.definitions import build_definitions

    all_resources = build_definitions(settings).resources | (resources or {})
    # Dagster finds the instance's definitions-state storage through a context variable; in a
    # long test session it can be left pointing at an instance another test already dropped
    # ("undefined DagsterInstance weakref"). Point it at this run's instance.
    with set_defs_state_storage(instance.defs_state_storage):
        return dg.materialize(
            assets or ingest_assets(),
            instance=instance,
            resources=all_resources,
            tags=tags,
            selection=selection,
            raise_on_error=raise_on_error,
        )


def materialize_range(instance, settings, keys: list[str], **kwargs):
    """Register ``keys`` as item partitions (those not yet known), then run over the range
    they span in the instance's partition order, as the sensor's range run would.
    ``kwargs``: as :func:`materialize_tags`."""
    from rag_core.constants import ITEMS_PARTITIONS

    known = set(instance.get_dynamic_partitions(ITEMS_PARTITIONS))
    new = [k for k in dict.fromkeys(keys) if k not in known]
    if new:
        instance.add_dynamic_partitions(ITEMS_PARTITIONS, new)
    order = instance.get_dynamic_partitions(ITEMS_PARTITIONS)
    ordered = sorted(keys, key=order.index)
    tags = {RANGE_START: ordered[0], RANGE_END: ordered[-1]}
    return materialize_tags(instance, settings, tags, **kwargs)


def run_request(instance, settings, request, **kwargs):
    """Carry out a sensor's run request in-process, as the daemon would launch it (its tags
    carry the partition range). ``kwargs``: as :func:`materialize_tags`."""
    return materialize_tags(instance, settings, request.tags, **kwargs)
