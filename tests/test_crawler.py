"""Crawler tests: real Scrapy runs (``python -m crawler``) against real local HTTP servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from scrapy.exceptions import IgnoreRequest
from scrapy.http import HtmlResponse, Request
from scrapy.settings import Settings

from crawler.content import is_textual, looks_binary, mime_type, normalise_domain
from crawler.items import PageItem
from crawler.middlewares import OffsiteRedirectMiddleware
from crawler.pipelines import StreamingStoragePipeline
from crawler.spiders.site import SiteSpider, split_arg
from rag_core.ids import canonical_url, item_key
from rag_core.items import CrawledItem, item_file_name, read_item_file
from tests.helpers import HttpServer, fixed

REPO_ROOT = Path(__file__).resolve().parents[1]
CRAWL_TIMEOUT = 45
Sites = tuple[HttpServer, HttpServer]  # the site under test, an off-site server

# -- the local site ------------------------------------------------------------------------------


def _page(title: str, *hrefs: str, body: str = "") -> bytes:
    links = "".join(f'<a href="{href}">{href}</a>\n' for href in hrefs)
    return f"<html><head><title>{title}</title></head><body>{body}{links}</body></html>".encode()


@pytest.fixture()
def sites(tmp_path: Path, http_server) -> Sites:
    """The site under test plus an "off-site" server that must never be contacted."""
    offsite = http_server()
    offsite.routes["/landing"] = fixed(200, "text/html", _page("Landing"))
    root = tmp_path / "site"
    (root / "private").mkdir(parents=True)
    (root / "index.html").write_bytes(
        _page(
            "  Home\n page ",
            "/about.html",
            "/about.html#team",  # same page as above once the fragment is dropped
            "/missing.html",  # broken link: 404
            "/moved",  # 301 to /target.html, reachable only this way
            "/old-about",  # 301 to /about.html: second URL of the same page
            "/offsite",  # 302 to another host
            "/private/secret.html",  # disallowed by robots.txt
            "/binary.html",
            "/download",
            "/image",
            "/latin1.html",
            "/notes",
            "/error500",
            "http://example.invalid/external",
            "mailto:someone@example.invalid",
            "#top",
        )
    )
    (root / "about.html").write_bytes(
        b"<html><body><h1> About us </h1><a href='/'>home</a><a href='../about.html'>self</a>"
        b"</body></html>"
    )
    (root / "target.html").write_bytes(_page("Target", "/"))
    (root / "private" / "secret.html").write_bytes(_page("Secret"))
    site = http_server(root)
    site.routes.update(
        {
            "/": fixed(200, "text/html", (root / "index.html").read_bytes()),
            "/robots.txt": fixed(200, "text/plain", b"User-agent: *\nDisallow: /private/\n"),
            "/moved": fixed(301, "text/html", b"", Location="/target.html"),
            "/old-about": fixed(301, "text/html", b"", Location=site.url("/about.html")),
            "/offsite": fixed(
                302, "text/html", b"", Location=f"http://localhost:{offsite.port}/landing"
            ),
            "/binary.html": fixed(200, "text/html", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 50),
            "/download": fixed(200, "application/pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"),
            "/image": fixed(200, "image/png", b"\x89PNG\r\n\x1a\n"),
            "/latin1.html": fixed(
                200,
                "text/html; charset=iso-8859-1",
                "<html><head><title>Caf\u00e9</title></head><body><p>Caf\u00e9 na\u00efve "
                "\u00bfQu\u00e9?</p></body></html>".encode("latin-1"),
            ),
            "/notes": fixed(200, "text/plain; charset=utf-8", b"Plain notes, no links.\n"),
            "/error500": fixed(500, "text/html", b"<h1>boom</h1>"),
        }
    )
    return site, offsite


# Pages of the site that must end up as item files (path -> expected title).
EXPECTED_PAGES = {
    "/": "Home page",
    "/about.html": "About us",
    "/target.html": "Target",
    "/latin1.html": "Caf\u00e9",
    "/notes": "",
}


def _run_crawl(site: HttpServer, tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any], Path]:
    raw = tmp_path / "raw"
    stats_file = tmp_path / "stats.json"
    cmd = [
        sys.executable, "-m", "crawler",
        "--start-url", site.url("/"),
        "--raw-dir", str(raw),
        "--stats-file", str(stats_file),
        "--log-level", "INFO",
        *extra,
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=CRAWL_TIMEOUT, check=False
    )
    assert stats_file.exists(), proc.stderr[-4000:]
    return proc.returncode, json.loads(stats_file.read_text(encoding="utf-8")), raw


def _item_files(raw: Path) -> set[str]:
    return {p.name for p in raw.iterdir() if p.name.startswith("item_")} if raw.exists() else set()


# -- end-to-end crawls ----------------------------------------------------------------------------


@pytest.mark.e2e
def test_full_crawl_of_local_site(sites: Sites, tmp_path: Path) -> None:
    site, offsite = sites
    code, stats, raw = _run_crawl(site, tmp_path)
    assert code == 0
    assert stats["finish_reason"] == "finished"

    expected = {item_file_name(item_key(site.url(p))): p for p in EXPECTED_PAGES}
    assert _item_files(raw) == set(expected)
    assert [p.name for p in raw.iterdir() if not p.name.startswith("item_")] == []  # no temp files

    items = {expected[name]: read_item_file(raw / name) for name in expected}
    for path, item in items.items():
        assert item.item_id == item_key(item.url)
        assert item.url == canonical_url(site.url(path))
        assert item.status == 200
        assert item.title == EXPECTED_PAGES[path]
        assert item.fetched_at.endswith("Z")
        assert not item.truncated

    home = items["/"]
    assert home.depth == 0 and home.requested_url == home.url
    assert home.content_type == "text/html"
    assert home.links[:3] == [site.url(p) for p in ("/about.html", "/missing.html", "/moved")]
    assert "http://example.invalid/external" in home.links
    assert len(home.links) == len(set(home.links)) == 13  # '#top', mailto and the dup dropped
    assert all("#" not in link for link in home.links)
    assert items["/about.html"].links == [site.url("/")]  # the self link is not outgoing
    assert items["/about.html"].requested_url in {site.url("/about.html"), site.url("/old-about")}

    target = items["/target.html"]
    assert target.requested_url == site.url("/moved")  # the URL asked for, before the 301
    assert target.depth == 1

    latin = items["/latin1.html"]
    assert "Caf\u00e9 na\u00efve \u00bfQu\u00e9?" in latin.html
    assert latin.encoding.lower() in {"cp1252", "iso-8859-1", "latin-1", "windows-1252"}
    assert items["/notes"].html == "Plain notes, no links.\n" and items["/notes"].links == []

    # robots.txt obeyed, off-site redirect never followed, retries on 500 happened.
    seen = site.paths()
    assert "/private/secret.html" not in seen
    assert offsite.seen == []
    assert all(host.startswith("127.0.0.1") for host, _ in site.seen)
    assert seen.count("/error500") == 3  # one try plus RETRY_TIMES=2
    assert seen.count("/") == 1  # a start URL linked back to is not fetched again

    assert stats["items_saved"] == stats["rag/items_saved"] == len(EXPECTED_PAGES)
    assert stats["gone_urls"] == [site.url("/missing.html")]
    assert stats["rag/skipped_binary"] == 1
    assert stats["rag/skipped_non_html"] == 2
    assert stats["rag/offsite_redirects_dropped"] == 1
    assert stats["rag/http_errors/500"] == 1
    assert stats["robotstxt/forbidden"] == 1
    assert stats["pages_crawled"] == stats["response_received_count"] - 1  # minus robots.txt
    assert isinstance(stats["elapsed_seconds"], float)
    assert stats["start_time"].endswith("+00:00")  # datetimes written as ISO strings


@pytest.mark.e2e
def test_max_pages_then_resume_from_jobdir(sites: Sites, tmp_path: Path) -> None:
    site, _ = sites
    jobdir = str(tmp_path / "job")
    code, stats, raw = _run_crawl(site, tmp_path, "--max-pages", "3", "--jobdir", jobdir)
    assert code == 0
    assert stats["finish_reason"] == "closespider_pagecount"
    first = _item_files(raw)
    assert 1 <= len(first) == stats["items_saved"] <= 3

    # The same job resumed without a limit fetches the rest and nothing twice.
    code, stats, raw = _run_crawl(site, tmp_path, "--jobdir", jobdir)
    assert code == 0 and stats["finish_reason"] == "finished"
    assert _item_files(raw) == {item_file_name(item_key(site.url(p))) for p in EXPECTED_PAGES}


@pytest.mark.e2e
def test_exclude_and_depth_limit(sites: Sites, tmp_path: Path) -> None:
    site, _ = sites
    code, stats, raw = _run_crawl(
        site, tmp_path, "--exclude", r"about", "--exclude", r"latin", "--depth-limit", "1"
    )
    assert code == 0
    assert "/about.html" not in site.paths() and "/old-about" not in site.paths()
    saved = {read_item_file(raw / name).url for name in _item_files(raw)}
    assert saved == {site.url(p) for p in ("/", "/target.html", "/notes")}


@pytest.mark.e2e
def test_cli_rejects_bad_start_url(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "crawler", "--start-url", "ftp://x/", "--raw-dir", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "absolute http(s) URL" in proc.stderr


# -- fast unit tests ------------------------------------------------------------------------------


class _FakeStats:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def inc_value(self, key: str, count: int = 1) -> None:
        self.values[key] = self.values.get(key, 0) + count

    def get_value(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


class _FakeCrawler:
    def __init__(self, settings: dict[str, Any], spider: Any = None) -> None:
        self.settings = Settings(settings)
        self.stats = _FakeStats()
        self.spider = spider


def _page_item(url: str, html: str = "<p>hi</p>") -> PageItem:
    return PageItem(item_id="ignored", url=canonical_url(url), status=200, html=html)


def test_pipeline_writes_atomically_and_counts(tmp_path: Path) -> None:
    crawler = _FakeCrawler({"RAW_ITEMS_DIR": str(tmp_path / "raw"), "MAX_PAGE_CHARS": 10})
    pipeline = StreamingStoragePipeline.from_crawler(crawler)  # type: ignore[arg-type]
    pipeline.open_spider()
    short = _page_item("http://Example.com:80/a?b=2&a=1#frag")
    pipeline.process_item(short)
    pipeline.process_item(_page_item("http://example.com/big", "x" * 25))
    # Same page under a URL that canonicalises identically: same file, and with the same main
    # text it is left as it is (no rewrite, so no downstream work).
    pipeline.process_item(_page_item("http://example.com/a?a=1&b=2"))

    files = sorted(p.name for p in (tmp_path / "raw").iterdir())
    key = item_key("http://example.com/a?a=1&b=2")
    assert files == sorted(
        [item_file_name(key), item_file_name(item_key("http://example.com/big"))]
    )
    saved = read_item_file(tmp_path / "raw" / item_file_name(key))
    assert saved.item_id == key and saved.url == "http://example.com/a?a=1&b=2"
    big = read_item_file(tmp_path / "raw" / item_file_name(item_key("http://example.com/big")))
    assert big.html == "x" * 10 and big.truncated
    assert crawler.stats.values == {
        "rag/items_saved": 2,
        "rag/items_truncated": 1,
        "rag/items_unchanged": 1,
    }


def test_pipeline_defaults() -> None:
    crawler = _FakeCrawler({})
    pipeline = StreamingStoragePipeline.from_crawler(crawler)  # type: ignore[arg-type]
    assert pipeline.raw_dir == Path("data/raw") and pipeline.max_page_chars == 2_000_000
    from crawler import settings

    assert settings.RAW_ITEMS_DIR == "data/raw" and settings.MAX_PAGE_CHARS == 2_000_000


def test_page_item_mirrors_crawled_item() -> None:
    assert list(PageItem.__dataclass_fields__) == list(CrawledItem.__dataclass_fields__)
    item = _page_item("http://example.com/")
    assert item.to_crawled_item() == CrawledItem(**vars(item))


@pytest.mark.parametrize(
    ("body", "binary"),
    [
        (b"", False),
        (b"<html><body>caf\xc3\xa9\n\t</body></html>", False),
        ("<p>caf\u00e9</p>".encode("latin-1"), False),
        ("<p>\u00e9t\u00e9</p>".encode("utf-16"), False),  # BOM: wide text, NULs are fine
        (b"<html>\x00</html>", True),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", True),
        (bytes(range(1, 32)) * 20, True),  # no NUL but mostly control bytes
        (b"<html>" + b"a" * 5000 + b"\x00", False),  # only the first 4 KB are sniffed
    ],
)
def test_looks_binary(body: bytes, binary: bool) -> None:
    assert looks_binary(body) is binary


def test_content_type_helpers() -> None:
    assert mime_type(b"Text/HTML; charset=ISO-8859-1") == "text/html"
    assert mime_type(None) == ""
    assert all(is_textual(m) for m in ("text/html", "application/xhtml+xml", "text/plain"))
    assert not is_textual("application/pdf") and not is_textual("image/png")


def test_spider_arguments() -> None:
    spider = SiteSpider(
        start_urls="http://Example.com:8080/a, https://docs.example.org/",
        include="/docs/,/blog/",
        exclude=["a,b{1,2}"],  # a list is not split, so regexes with commas survive
    )
    assert spider.allowed_domains == ["docs.example.org", "example.com"]  # ports dropped
    assert [r.pattern for r in spider.include] == ["/docs/", "/blog/"]
    assert [r.pattern for r in spider.exclude] == ["a,b{1,2}"]
    explicit = SiteSpider(start_urls=["http://a.test/"], allowed_domains="b.test:81,http://c.test")
    assert explicit.allowed_domains == ["b.test", "c.test"]
    assert split_arg(None) == [] and split_arg(" x , ,y ") == ["x", "y"]
    assert normalise_domain("HTTPS://Sub.Example.com:443/path") == "sub.example.com"
    with pytest.raises(ValueError):
        SiteSpider()


def test_offsite_redirect_middleware() -> None:
    spider = SiteSpider(start_urls="http://site.test:8000/")
    crawler = _FakeCrawler({}, spider=spider)
    mw = OffsiteRedirectMiddleware.from_crawler(crawler)  # type: ignore[arg-type]
    request = Request("http://site.test:8000/go", dont_filter=True)

    def redirect_to(location: str) -> HtmlResponse:
        return HtmlResponse(request.url, status=302, headers={"Location": location}, body=b"")

    for allowed in ("/elsewhere", "http://site.test:8000/z"):
        response = redirect_to(allowed)
        assert mw.process_response(request, response) is response
    # Only the start URL's origin by default: another port or a subdomain is off-site.
    for offsite in ("http://evil.test/landing", "http://sub.site.test/x", "//site.test:9/y"):
        with pytest.raises(IgnoreRequest):
            mw.process_response(request, redirect_to(offsite))
    redirected = Request("http://evil.test/", meta={"redirect_urls": [request.url]})
    with pytest.raises(IgnoreRequest):
        mw.process_request(redirected)
    assert mw.process_request(Request("http://evil.test/")) is None  # not a redirect: not ours
    assert crawler.stats.values == {"rag/offsite_redirects_dropped": 4}
    # ALLOWED_DOMAINS widens on purpose: the domain and its subdomains, on any port.
    wide = OffsiteRedirectMiddleware.from_crawler(
        _FakeCrawler(
            {}, spider=SiteSpider(start_urls="http://site.test:8000/", allowed_domains="site.test")
        )  # fmt: skip
    )
    for allowed in ("http://sub.site.test/x", "//site.test:9/y"):
        response = redirect_to(allowed)
        assert wide.process_response(request, response) is response
