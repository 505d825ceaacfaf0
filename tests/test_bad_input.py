"""Bad input through the real pipeline (issue 5): one real Scrapy crawl of a local site that
serves every kind of bad page, plus hand-made broken item files, ingested in ONE batch.

Each case must end as a recorded error (``ingest_errors``) or a clean skip of that item only,
while the good pages of the same batch are stored in full (documents, chunks, embeddings).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import duckdb
import pytest
from scrapy.exceptions import IgnoreRequest
from scrapy.http import HtmlResponse, Request

from crawler.content import wrongly_declared_wide
from crawler.middlewares import OffsiteRedirectMiddleware
from crawler.settings import MAX_PAGE_CHARS
from crawler.spiders.site import SiteSpider
from rag_assets.definitions import build_definitions
from rag_assets.ingest import chunks, documents, embeddings, raw_items
from rag_core.constants import ITEMS_PARTITIONS
from rag_core.extraction import MAX_TEXT_CHARS
from rag_core.ids import canonical_url, item_key
from rag_core.items import CrawledItem, item_file_name, key_from_file_name, read_item_file
from tests.helpers import page_html, paragraphs, settings_for

REPO_ROOT = Path(__file__).resolve().parents[1]
CRAWL_TIMEOUT = 60

# -- the bad site ---------------------------------------------------------------------------------

Route = Callable[[], tuple[int, dict[str, str], bytes]]


@dataclass
class Server:
    """A threaded HTTP server on 127.0.0.1 that records every path it is asked for."""

    httpd: ThreadingHTTPServer
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def hits(self, path: str) -> int:
        """How many requests asked for ``path`` (query string ignored)."""
        with self.lock:
            return sum(1 for seen in self.seen if seen.split("?", 1)[0] == path)


def _start_server() -> Server:
    server: Server

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            with server.lock:
                server.seen.append(self.path)
            route = server.routes.get(self.path.split("?", 1)[0])
            if route is None:
                status, headers, body = 404, {"Content-Type": "text/html"}, b"<h1>Not found</h1>"
            else:
                status, headers, body = route()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server = Server(httpd)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return server


def _fixed(status: int, content_type: str, body: bytes, **extra: str) -> Route:
    headers = {"Content-Type": content_type, **extra}
    return lambda: (status, headers, body)


def _html(title: str, body: str, *hrefs: str) -> str:
    links = "".join(f'<a href="{href}">link</a>\n' for href in hrefs)
    return (
        f"<html><head><title>{title} | Bad Site</title></head><body>"
        "<header><nav><a href='/'>Home</a></nav></header>"
        f"<main><h1>{title}</h1>{body}<p>{links}</p></main>"
        "<footer>Copyright 2026 Bad Site. All rights reserved.</footer></body></html>"
    )


GOOD = {
    "/": "Start page",
    "/good-1": "Installing the tool",
    "/good-2": "Configuring retries",
    "/dup": "Duplicate target",
}
# Readable ASCII sentences of the charset pages: they must survive any charset confusion.
ASCII_SENTENCE = "The ASCII words of this sentence always survive decoding."
CAFE = "Caf\u00e9 cr\u00e8me"
MOJIBAKE = {"utf-8": "Caf\u00c3\u00a9 cr\u00c3\u00a8me", "latin-1": "Caf\ufffd cr\ufffdme"}
CHARSET_PAGES = {
    # path: (charset in Content-Type, charset in <meta>, real encoding, acceptable stored text)
    "/latin1.html": ("iso-8859-1", "", "latin-1", {CAFE}),
    "/cp1252.html": ("windows-1252", "", "cp1252", {CAFE}),
    "/says-utf8-is-latin1.html": ("utf-8", "", "latin-1", {CAFE, MOJIBAKE["latin-1"]}),
    "/says-latin1-is-utf8.html": ("iso-8859-1", "", "utf-8", {CAFE, MOJIBAKE["utf-8"]}),
    # UTF-16 declared for an ASCII-compatible body: decoded as declared, the whole page
    # (ASCII included) became CJK-looking garbage; the spider now decodes it as UTF-8.
    "/says-utf16-is-utf8.html": ("utf-16", "", "utf-8", {CAFE}),
    "/meta-utf16-is-utf8.html": ("", "utf-16", "utf-8", {CAFE}),
}
EMPTY_PAGES = ("/empty", "/no-main-text")
BIG_PAGE_BYTES = 10 * 1024 * 1024
BIG_END_MARKER = "END-OF-THE-BIG-PAGE"


def _big_page() -> bytes:
    """A 10 MB HTML page, ASCII, whose text is long "words" (hashes, blobs): every such word is
    one [UNK] token, so the ~1 MB of text kept after the caps embeds in seconds on a CPU."""
    head = (
        "<html><head><title>Big page</title></head><body><main><h1>Big page</h1>"
        "<p>Readable start of the big page.</p>\n"
    )
    tail = f"<p>{BIG_END_MARKER}</p></main></body></html>"
    rows: list[str] = []
    size = len(head) + len(tail)
    n = 0
    while size < BIG_PAGE_BYTES:
        row = f"<p>{n:08d}{'k' * 150}</p>\n"
        rows.append(row)
        size += len(row)
        n += 1
    page = (head + "".join(rows) + tail).encode("ascii")
    assert len(page) >= BIG_PAGE_BYTES
    return page


@dataclass
class Crawl:
    site: Server
    offsite: Server
    returncode: int
    stats: dict[str, Any]
    raw: Path
    big_page: bytes
    stderr: str
    items: dict[str, CrawledItem] = field(default_factory=dict)  # file name -> item, as crawled

    def url(self, path: str) -> str:
        return f"http://localhost:{self.site.port}{path}"

    def key(self, path: str) -> str:
        return item_key(self.url(path))


def _build_site(site: Server, offsite: Server, big: bytes) -> None:
    port = site.port
    offsite.routes["/landing"] = _fixed(
        200, "text/html", _html("Landing", "<p>Off-site.</p>").encode()
    )
    index_links = (
        "/good-1", "/good-2",
        "/dup", "/dup",  # the same URL twice on one page (and once more from /good-1)
        # Four spellings of one page: query order, fragment, upper-case host.
        "/canon?b=2&a=1", "/canon?a=1&b=2#part", f"http://LOCALHOST:{port}/canon?a=1&b=2",
        *CHARSET_PAGES, *EMPTY_PAGES,
        "/binary.html", "/big.html", "/loop-a", "/loop-self", "/missing", "/error500", "/offsite",
    )  # fmt: skip
    pages = {
        "/": _html("Start page", paragraphs("the start page", 3), *index_links),
        "/good-1": _html(
            "Installing the tool",
            "<h2>Linux</h2>"
            + paragraphs("installing on Linux", 12)
            + "<h2>Windows</h2>"
            + paragraphs("installing on Windows", 4),
            "/dup",
            "/canon?b=2&a=1",
        ),
        "/good-2": _html("Configuring retries", paragraphs("configuring retries", 6)),
        "/dup": _html("Duplicate target", paragraphs("reaching one page twice", 2)),
        "/canon": _html("Canonical page", paragraphs("canonical URLs", 2)),
    }
    site.routes.update(
        {path: _fixed(200, "text/html", html.encode()) for path, html in pages.items()}
    )
    for path, (header, meta, encoding, _) in CHARSET_PAGES.items():
        html = (
            f"<html><head>{f'<meta charset={meta}>' if meta else ''}<title>{CAFE}</title></head>"
            f"<body><main><h1>{CAFE}</h1><p>{ASCII_SENTENCE}</p><p>{CAFE} is on the menu.</p>"
            "</main></body></html>"
        )
        content_type = f"text/html; charset={header}" if header else "text/html"
        site.routes[path] = _fixed(200, content_type, html.encode(encoding))
    site.routes.update(
        {
            "/robots.txt": _fixed(200, "text/plain", b"User-agent: *\nAllow: /\n"),
            "/binary.html": _fixed(200, "text/html", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 200),
            "/empty": _fixed(200, "text/html", b""),
            "/no-main-text": _fixed(
                200,
                "text/html",
                b"<html><head><title>Chrome only</title></head><body><header><nav>"
                b"<a href='/'>Home</a></nav></header><footer>Copyright 2026</footer></body></html>",
            ),
            "/big.html": _fixed(200, "text/html; charset=utf-8", big),
            "/loop-a": _fixed(302, "text/html", b"", Location="/loop-b"),
            "/loop-b": _fixed(302, "text/html", b"", Location=f"http://localhost:{port}/loop-a"),
            "/loop-self": _fixed(301, "text/html", b"", Location="/loop-self#again"),
            "/error500": _fixed(500, "text/html", b"<h1>boom</h1>"),
            "/offsite": _fixed(
                302, "text/html", b"", Location=f"http://127.0.0.1:{offsite.port}/landing"
            ),
        }
    )


@pytest.fixture(scope="module")
def crawl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Crawl]:
    """One real crawl (``python -m crawler`` in a subprocess) of the bad site."""
    tmp = tmp_path_factory.mktemp("bad_input")
    site, offsite = _start_server(), _start_server()
    big = _big_page()
    _build_site(site, offsite, big)
    raw, stats_file = tmp / "data" / "raw", tmp / "stats.json"
    cmd = [
        sys.executable, "-m", "crawler",
        "--start-url", f"http://localhost:{site.port}/",  # allowed domain: localhost only
        "--raw-dir", str(raw),
        "--stats-file", str(stats_file),
        "--log-level", "INFO",
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=CRAWL_TIMEOUT, check=False
        )
        assert stats_file.exists(), proc.stderr[-4000:]
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
        # Read before the ingestion fixture adds its hand-made files to the same folder.
        items = {p.name: read_item_file(p) for p in raw.iterdir()} if raw.exists() else {}
        yield Crawl(site, offsite, proc.returncode, stats, raw, big, proc.stderr, items)
    finally:
        for server in (site, offsite):
            server.httpd.shutdown()
            server.httpd.server_close()


# -- hand-made item files -------------------------------------------------------------------------


# case -> what raw_items must record for it
HAND_MADE = {
    "malformed": "is not valid JSON",
    "truncated": "is not valid JSON (truncated?)",
    "empty": "is empty",
    "missing_fields": "is missing field(s): status, html",
    "wrong_types": "'links' must be a list",
}


def _hand_made_files(raw: Path) -> dict[str, str]:
    """Broken item files written straight into the raw folder; returns case -> partition key."""
    keys = {case: item_key(f"http://handmade.test/{case}") for case in HAND_MADE}
    valid = CrawledItem(
        item_id=keys["truncated"], url="http://handmade.test/truncated", status=200,
        html=page_html("Cut short", paragraphs("truncated files", 3)),
    ).to_json()  # fmt: skip
    contents = {
        # Unquoted key and a trailing comma: JSON-like, not JSON.
        "malformed": '{"item_id": "KEY", "url": "http://handmade.test/m", status: 200,}'.replace(
            "KEY", keys["malformed"]
        ),
        "truncated": valid[: len(valid) // 2],
        "empty": "",
        "missing_fields": json.dumps(
            {"item_id": keys["missing_fields"], "url": "http://handmade.test/missing_fields"}
        ),
        # Every field present, one of the wrong type: fails this item, not the batch.
        "wrong_types": json.dumps(
            {
                "item_id": keys["wrong_types"],
                "url": "http://handmade.test/wrong_types",
                "status": 200,
                "html": "<p>x</p>",
                "links": 5,
            }
        ),  # fmt: skip
    }
    for case, text in contents.items():
        (raw / item_file_name(keys[case])).write_bytes(text.encode("utf-8"))
    assert (raw / item_file_name(keys["empty"])).stat().st_size == 0
    return keys


@dataclass
class Ingested:
    crawl: Crawl
    hand_made: dict[str, str]
    batch: list[str]
    con: duckdb.DuckDBPyConnection

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        return self.con.execute(sql, list(params)).fetchall()

    def errors(self) -> dict[tuple[str, str], str]:
        return {
            (item, stage): error
            for item, stage, error in self.rows("SELECT item_id, stage, error FROM ingest_errors")
        }

    def ids(self, table: str) -> set[str]:
        return {r[0] for r in self.rows(f"SELECT DISTINCT item_id FROM {table}")}


@pytest.fixture(scope="module")
def ingested(crawl: Crawl) -> Iterator[Ingested]:
    """The crawl's item files plus the hand-made ones, ingested in-process in ONE run."""
    hand_made = _hand_made_files(crawl.raw)
    batch = sorted(k for k in map(key_from_file_name, (p.name for p in crawl.raw.iterdir())) if k)
    settings = settings_for(crawl.raw.parent, EMBEDDING_SERVER="false")
    assert settings.raw_dir == crawl.raw
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ITEMS_PARTITIONS, batch)
        result = dg.materialize(
            [raw_items, documents, chunks, embeddings],
            instance=instance,
            resources=build_definitions(settings).resources,
            tags={
                "dagster/asset_partition_range_start": batch[0],
                "dagster/asset_partition_range_end": batch[-1],
            },
        )
    assert result.success  # no bad item may fail the run
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        yield Ingested(crawl, hand_made, batch, con)


# -- the tests ------------------------------------------------------------------------------------


def test_crawl_finishes_with_exactly_the_good_and_odd_pages_saved(crawl: Crawl) -> None:
    assert crawl.returncode == 0, crawl.stderr[-4000:]
    assert crawl.stats["finish_reason"] == "finished"
    saved = set(crawl.items)
    expected = [*GOOD, "/canon?a=1&b=2", *CHARSET_PAGES, *EMPTY_PAGES, "/big.html"]
    # No item for binary, 404, 500, the redirect loop or the off-site redirect; no temp files.
    assert saved == {item_file_name(crawl.key(path)) for path in expected}
    assert crawl.stats["items_saved"] == len(expected)


def test_item_files_broken_on_disk_are_recorded_errors(ingested: Ingested) -> None:
    # malformed JSON, truncated JSON, 0 bytes, missing fields -> stage raw_items, nothing stored.
    errors = ingested.errors()
    for case, message in HAND_MADE.items():
        key = ingested.hand_made[case]
        assert key in ingested.batch
        assert message in errors[(key, "raw_items")], case
    broken = set(ingested.hand_made.values())
    for table in ("raw_items", "documents", "chunks", "embeddings"):
        assert not broken & ingested.ids(table), table


def test_pages_in_other_charsets_are_stored_with_their_text(ingested: Ingested) -> None:
    # Declared right (latin-1, windows-1252): decoded exactly. Declared wrong (utf-8 for latin-1
    # bytes, latin-1 for utf-8 bytes): replacement chars or mojibake, never an exception, and
    # the ASCII text is intact. UTF-16 declared for UTF-8 bytes: decoded as UTF-8, counted.
    crawl = ingested.crawl
    assert crawl.stats["rag/wrong_charset_ignored"] == 2
    for path, (_, _, _, acceptable) in CHARSET_PAGES.items():
        key = crawl.key(path)
        item = crawl.items[item_file_name(key)]
        ((title, text),) = ingested.rows("SELECT title, text FROM documents WHERE item_id = ?", key)
        assert ASCII_SENTENCE in text, path
        assert "\x00" not in text
        assert title in acceptable, (path, title)
        assert any(f"{accented} is on the menu." in text for accented in acceptable), text
        assert item.encoding, path
        if path in ("/latin1.html", "/cp1252.html"):
            assert title == CAFE and f"{CAFE} is on the menu." in text
        assert ingested.rows("SELECT count(*) FROM chunks WHERE item_id = ?", key)[0][0] >= 1


def test_binary_body_served_as_html_is_skipped_and_counted(crawl: Crawl) -> None:
    assert crawl.site.hits("/binary.html") == 1
    assert crawl.stats["rag/skipped_binary"] == 1
    assert item_file_name(crawl.key("/binary.html")) not in crawl.items


def test_empty_pages_are_recorded_at_stage_documents(ingested: Ingested) -> None:
    errors = ingested.errors()
    for path in EMPTY_PAGES:
        key = ingested.crawl.key(path)
        assert key in ingested.ids("raw_items"), path  # the fetch itself is kept
        assert "no main text" in errors[(key, "documents")], path
        for table in ("documents", "chunks", "embeddings"):
            assert key not in ingested.ids(table), (path, table)
    ((chars,),) = ingested.rows(
        "SELECT html_chars FROM raw_items WHERE item_id = ?", ingested.crawl.key("/empty")
    )
    assert chars == 0


def test_big_page_is_capped_and_stored(ingested: Ingested) -> None:
    # The crawler keeps MAX_PAGE_CHARS = 2,000,000 characters of HTML (flagged `truncated`);
    # extraction then keeps at most MAX_TEXT_CHARS = 1,000,000 characters of main text.
    assert (MAX_PAGE_CHARS, MAX_TEXT_CHARS) == (2_000_000, 1_000_000)
    crawl = ingested.crawl
    key = crawl.key("/big.html")
    assert len(crawl.big_page) >= 10 * 1024 * 1024
    item = read_item_file(crawl.raw / item_file_name(key))
    assert item.truncated and item.html == crawl.big_page[:MAX_PAGE_CHARS].decode("ascii")
    assert crawl.stats["rag/items_truncated"] == 1
    ((chars, truncated),) = ingested.rows(
        "SELECT html_chars, truncated FROM raw_items WHERE item_id = ?", key
    )
    assert (chars, truncated) == (MAX_PAGE_CHARS, True)
    ((text,),) = ingested.rows("SELECT text FROM documents WHERE item_id = ?", key)
    assert text.startswith("# Big page\n\nReadable start of the big page.")
    # Cut at a line boundary in the second half of the cap (the HTML kept holds ~2x that).
    assert MAX_TEXT_CHARS // 2 < len(text) <= MAX_TEXT_CHARS
    assert BIG_END_MARKER not in text
    n_chunks = ingested.rows("SELECT count(*) FROM chunks WHERE item_id = ?", key)[0][0]
    n_vectors = ingested.rows("SELECT count(*) FROM embeddings WHERE item_id = ?", key)[0][0]
    assert n_chunks == n_vectors > 1


def test_same_page_reached_twice_or_spelled_differently_is_one_item(crawl: Crawl) -> None:
    # /dup is linked three times; /canon four ways (query order, fragment, upper-case host).
    assert crawl.site.hits("/dup") == 1
    assert crawl.site.hits("/canon") == 1
    items = list(crawl.items.values())
    canon = [i for i in items if "/canon" in i.url]
    assert [i.url for i in canon] == [canonical_url(crawl.url("/canon?a=1&b=2"))]
    assert len([i for i in items if i.url.endswith("/dup")]) == 1


def test_redirect_loop_gives_no_item_and_ends(crawl: Crawl) -> None:
    # A -> B -> A and A -> A: each URL fetched once, the 3xx back into the chain is dropped.
    for path in ("/loop-a", "/loop-b", "/loop-self"):
        assert crawl.site.hits(path) == 1, path
    assert not any("/loop" in item.url for item in crawl.items.values())
    assert crawl.stats["rag/redirect_loops"] == 2
    # Ignored requests: the two loops and the off-site redirect.
    assert crawl.stats["rag/requests_ignored"] == 3
    assert crawl.stats["elapsed_seconds"] < 20  # DOWNLOAD_TIMEOUT is 30 s: nothing hung


def test_404_is_gone_and_500_is_retried_then_given_up(crawl: Crawl) -> None:
    assert crawl.stats["gone_urls"] == [crawl.url("/missing")]
    assert crawl.site.hits("/missing") == 1
    assert crawl.site.hits("/error500") == 3  # one try plus RETRY_TIMES = 2
    assert crawl.stats["rag/http_errors/500"] == 1
    assert crawl.stats["retry/max_reached"] == 1
    assert not {item_file_name(crawl.key(p)) for p in ("/missing", "/error500")} & set(crawl.items)


def test_offsite_redirect_is_never_followed(crawl: Crawl) -> None:
    assert crawl.site.hits("/offsite") == 1
    assert crawl.offsite.seen == []
    assert crawl.stats["rag/offsite_redirects_dropped"] == 1


def test_good_pages_of_the_same_batch_are_fully_stored(ingested: Ingested) -> None:
    crawl = ingested.crawl
    expected_errors = {(key, "raw_items") for key in ingested.hand_made.values()} | {
        (crawl.key(path), "documents") for path in EMPTY_PAGES
    }
    assert set(ingested.errors()) == expected_errors  # nothing else failed
    good = [crawl.key(p) for p in [*GOOD, "/canon?a=1&b=2"]]
    docs = dict(ingested.rows("SELECT item_id, title FROM documents"))
    for path, key in zip([*GOOD, "/canon"], good, strict=True):
        assert docs[key] == GOOD.get(path, "Canonical page")
    stored = set(ingested.batch) - {k for k, _ in expected_errors}
    assert set(docs) == stored
    assert ingested.ids("chunks") == stored
    # One embedding per chunk, for every stored item, and nothing else.
    chunk_ids = ingested.rows("SELECT chunk_id FROM chunks ORDER BY chunk_id")
    vectors = ingested.rows("SELECT chunk_id FROM embeddings ORDER BY chunk_id")
    assert chunk_ids == vectors and len(vectors) > len(stored)
    ((install,),) = ingested.rows(
        "SELECT text FROM documents WHERE item_id = ?", crawl.key("/good-1")
    )
    assert "## Windows" in install and "All rights reserved" not in install


# -- the two crawler fixes, in isolation ----------------------------------------------------------


def test_redirect_loop_is_dropped_even_for_dont_filter_requests() -> None:
    # A dont_filter request (a re-queued page) is not stopped by the dupe filter: without the
    # loop check it bounced A -> B -> A ... until REDIRECT_MAX_TIMES.
    class Stats:
        def __init__(self) -> None:
            self.values: dict[str, int] = {}

        def inc_value(self, key: str, count: int = 1) -> None:
            self.values[key] = self.values.get(key, 0) + count

    crawler = SimpleNamespace(spider=SiteSpider(start_urls="http://site.test/"), stats=Stats())
    mw = OffsiteRedirectMiddleware.from_crawler(crawler)  # type: ignore[arg-type]
    b = Request(
        "http://site.test/b", dont_filter=True, meta={"redirect_urls": ["http://site.test/a"]}
    )

    def redirect(location: str) -> HtmlResponse:
        return HtmlResponse(b.url, status=302, headers={"Location": location}, body=b"")

    ok = redirect("/c")
    assert mw.process_response(b, ok) is ok
    for looping in ("/a", "HTTP://SITE.TEST/a#x", "/b"):
        with pytest.raises(IgnoreRequest, match="Redirect loop"):
            mw.process_response(b, redirect(looping))
    assert crawler.stats.values == {"rag/redirect_loops": 3}


@pytest.mark.parametrize(
    ("encoding", "body", "wrong"),
    [
        ("utf-16", b"<html><p>ascii</p></html>", True),
        ("UTF-16LE", b"<p>caf\xc3\xa9</p>", True),
        ("utf-32", b"<p>x</p>", True),
        ("utf-16", "<p>x</p>".encode("utf-16"), False),  # BOM: really UTF-16
        ("utf-16-le", "<p>x</p>".encode("utf-16-le"), False),  # NULs: really UTF-16
        ("utf-8", b"<p>x</p>", False),
        ("no-such-codec", b"<p>x</p>", False),
        (None, b"<p>x</p>", False),
    ],
)
def test_wrongly_declared_wide(encoding: str | None, body: bytes, wrong: bool) -> None:
    assert wrongly_declared_wide(encoding, body) is wrong
