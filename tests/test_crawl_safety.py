"""The crawl stays where it is sent and within its size caps (issue 10, points 1 and 2).

Real Scrapy crawls (``python -m crawler``) against local servers. A hostile site is
simulated on loopback: the start site links to another port of 127.0.0.1 (standing in for
the Dagster UI or any internal service) and to ``localhost``, a *name* that resolves to
an internal address, as an attacker's DNS name would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crawler.policy import AddressGuard, UrlPolicy, is_internal
from rag_core.items import read_item_file
from tests.helpers import HttpServer, fixed
from tests.test_crawler import REPO_ROOT, _page

CRAWL_TIMEOUT = 90


@pytest.fixture()
def servers(http_server):
    site, internal = http_server(), http_server()
    internal.routes["/secret"] = fixed(200, "text/html", _page("Internal secret"))
    internal.routes["/robots.txt"] = fixed(200, "text/plain", b"")
    site.routes["/robots.txt"] = fixed(200, "text/plain", b"")
    return site, internal


def crawl(site: HttpServer, out: Path, *extra: str, start: str = "/") -> tuple[int, dict, str]:
    stats_file = out / "crawl" / "last_crawl_stats.json"
    cmd = [
        sys.executable, "-m", "crawler", "--start-url", site.url(start),
        "--raw-dir", str(out / "raw"), "--stats-file", str(stats_file), *extra,
    ]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=CRAWL_TIMEOUT, check=False
    )
    assert stats_file.exists(), proc.stderr[-4000:]
    return proc.returncode, json.loads(stats_file.read_text()), proc.stderr


def titles(raw: Path) -> set[str]:
    return {read_item_file(p).title for p in raw.glob("item_*")} if raw.exists() else set()


def test_by_default_only_the_start_origin_is_crawled(servers, tmp_path):
    site, internal = servers
    site.routes["/"] = fixed(
        200,
        "text/html",
        _page("Home", "/a", internal.url("/secret"), f"http://localhost:{site.port}/a"),
    )
    site.routes["/a"] = fixed(200, "text/html", _page("A"))
    code, stats, _ = crawl(site, tmp_path)
    assert code == 0
    # Another port of the same host (old rule: host names only, any port) is never asked.
    assert internal.seen == []
    # Another host name for the same server is another origin: not followed either.
    assert all(host == f"127.0.0.1:{site.port}" for host, _ in site.seen)
    assert titles(tmp_path / "raw") == {"Home", "A"}
    assert stats["refused_internal_address"] == 0


def hostile_site(site: HttpServer, internal: HttpServer) -> None:
    site.routes["/"] = fixed(
        200,
        "text/html",
        _page(
            "Home",
            internal.url("/secret"),  # another port of loopback
            f"http://localhost:{internal.port}/secret?via=name",  # a name resolving inward
            f"http://localhost:{site.port}/same",  # the start server itself, by name
            "/redirect-inward",
        ),
    )
    site.routes["/same"] = fixed(200, "text/html", _page("Same server"))
    site.routes["/redirect-inward"] = fixed(
        302, "text/html", b"", Location=internal.url("/secret?via=redirect")
    )


def test_internal_addresses_are_refused_even_when_domains_are_widened(servers, tmp_path):
    site, internal = servers
    hostile_site(site, internal)
    code, stats, log = crawl(site, tmp_path, "--allowed-domain", "127.0.0.1",
                             "--allowed-domain", "localhost")  # fmt: skip
    assert code == 0
    # Stored: the start server, also when reached by name. Refused: everything served by the
    # internal server, whether reached by address, by name or by redirect.
    assert titles(tmp_path / "raw") == {"Home", "Same server"}
    refused = stats["refused_urls"]
    assert stats["refused_internal_address"] == len(refused) >= 3
    for url in (internal.url("/secret"), f"http://localhost:{internal.port}/secret?via=name",
                internal.url("/secret?via=redirect")):  # fmt: skip
        assert any(line.startswith(url + " (connected to 127.0.0.1)") for line in refused), refused
    assert all(f":{internal.port}/" in url for url in refused)
    assert "Refused" in log and "ALLOW_PRIVATE_NETWORKS" in log

    # `rag status --errors` lists them.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER")}
    env.update(DATA_DIR=str(tmp_path), DUCKDB_PATH=str(tmp_path / "rag.duckdb"))
    status = subprocess.run(
        [sys.executable, "-m", "rag_app.cli", "status", "--errors"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert f"refused {len(refused)} response(s) from internal addresses" in status.stdout
    assert internal.url("/secret?via=redirect") in status.stdout


def test_allow_private_networks_lifts_the_refusal(servers, tmp_path):
    site, internal = servers
    hostile_site(site, internal)
    code, stats, _ = crawl(site, tmp_path, "--allowed-domain", "127.0.0.1",
                           "--allowed-domain", "localhost", "--allow-private-networks")  # fmt: skip
    assert code == 0
    assert "Internal secret" in titles(tmp_path / "raw")
    assert stats["refused_internal_address"] == 0


@pytest.mark.unit
def test_url_policy_and_address_rules():
    policy = UrlPolicy(["http://docs.example.com/start", "https://other.example:8443/"])
    assert policy.allows("http://docs.example.com/x")
    assert policy.allows("https://docs.example.com/x")  # the http -> https upgrade
    assert policy.allows("https://other.example:8443/y")
    assert not policy.allows("http://docs.example.com:8080/")  # another port
    assert not policy.allows("http://api.docs.example.com/")  # a subdomain
    assert not policy.allows("https://other.example/")  # another port (443)
    assert not policy.allows("ftp://docs.example.com/")
    assert not policy.allows("http://docs.example.com/" + "a" * 3000)  # URL too long
    widened = UrlPolicy(["http://docs.example.com/"], ["example.com"])
    assert widened.allows("http://api.example.com:8080/")  # the domain and its subdomains
    assert not widened.allows("http://example.org/")
    for address in ("127.0.0.1", "10.1.2.3", "169.254.169.254", "192.168.1.1", "::1",
                    "fe80::1", "224.0.0.1", "0.0.0.0", "100.64.0.1", "::ffff:127.0.0.1",
                    "240.0.0.1", "fc00::1"):  # fmt: skip
        assert is_internal(address), address
    assert not is_internal("93.184.216.34") and not is_internal("2606:4700::1111")
    guard = AddressGuard(["http://127.0.0.1:8765/"])
    assert not guard.refuses("127.0.0.1", "http://127.0.0.1:8765/page")  # the start server
    assert guard.refuses("127.0.0.1", "http://127.0.0.1:3000/")  # another port of it
    assert guard.refuses("169.254.169.254", "http://metadata.example/")
    assert not guard.refuses("93.184.216.34", "http://example.com/")
    assert not AddressGuard([], allow_private_networks=True).refuses("10.0.0.1", "http://x/")


# -- size caps (point 2) -------------------------------------------------------------------

MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, code)\n"
)


def peak_rss_mb(site: HttpServer, out: Path, path: str, *extra: str) -> tuple[int, dict]:
    """Peak RSS (MB) of a ``python -m crawler`` process crawling ``path``, and its stats."""
    stats_file = out / "stats.json"
    cmd = [
        sys.executable, "-c", MEASURE, sys.executable, "-m", "crawler",
        "--start-url", site.url(path), "--raw-dir", str(out / "raw"),
        "--stats-file", str(stats_file), "--max-pages", "1", "--log-level", "WARNING", *extra,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    rss, code = proc.stdout.split()
    assert code == "0", proc.stderr[-3000:]
    return int(rss), json.loads(stats_file.read_text())


def big_page(size: int, with_length: bool):
    def route(handler):
        # Streamed in 1 MB pieces: the server itself never holds the page.
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html")
        if with_length:
            handler.send_header("Content-Length", str(size))
        handler.end_headers()
        piece = (b"<p>" + b"x" * 1020 + b"</p>") * 1024
        sent = 0
        try:
            while sent < size:
                handler.wfile.write(piece[: size - sent])
                sent += len(piece)
        except OSError:
            pass  # the crawler hung up at its cap
        handler.close_connection = True
        return None

    return route


def serve_raw(server: HttpServer, path: str, route) -> None:
    """Register a route that writes its own response (other routes return one)."""
    original = server.httpd.RequestHandlerClass.do_GET

    def do_get(handler):
        if handler.path == path:
            route(handler)
            return
        original(handler)

    server.httpd.RequestHandlerClass.do_GET = do_get


@pytest.mark.parametrize("with_length", [True, False])
def test_a_50_mb_page_is_not_downloaded_and_memory_stays_low(servers, tmp_path, with_length):
    site, _ = servers
    serve_raw(site, "/big", big_page(50 * 1024 * 1024, with_length))
    rss, stats = peak_rss_mb(site, tmp_path, "/big")
    items = [read_item_file(p) for p in (tmp_path / "raw").glob("item_*")]
    if with_length:
        # Announced as more than 4x the 8 MB cap: not downloaded at all.
        assert items == []
    else:
        # Streamed without a length: downloading stopped at 8 MB, that much kept and parsed.
        (item,) = items
        assert item.truncated and len(item.html) == 2_000_000
        assert stats["rag/downloads_cut"] == 1
    assert rss < 250, f"peak RSS {rss} MB"


def test_a_page_with_100000_links_keeps_at_most_the_cap(servers, tmp_path):
    site, _ = servers
    links = "".join(f'<a href="/l/{i}">l{i}</a>' for i in range(100_000))
    body = f"<html><title>Links</title><body>{links}</body></html>".encode()
    site.routes["/many"] = fixed(200, "text/html", body)
    rss, stats = peak_rss_mb(site, tmp_path, "/many")
    (item_file,) = (tmp_path / "raw").glob("item_*")
    item = read_item_file(item_file)
    assert len(item.links) == 2000 and item.links[0] == site.url("/l/0")
    assert stats["rag/pages_with_links_capped"] == 1
    assert rss < 400, f"peak RSS {rss} MB"


def test_links_followed_per_page_and_url_length_are_capped(servers, tmp_path):
    site, _ = servers
    long_link = "/long/" + "a" * 300
    site.routes["/"] = fixed(
        200, "text/html", _page("Home", long_link, *[f"/p{i}" for i in range(50)])
    )
    for i in range(50):
        site.routes[f"/p{i}"] = fixed(200, "text/html", _page(f"P{i}"))
    site.routes[long_link] = fixed(200, "text/html", _page("Long"))
    code, stats, _ = crawl(site, tmp_path, "--max-links-per-page", "10", "--max-url-length", "200")
    assert code == 0
    fetched = [p for p in site.paths() if p not in ("/", "/robots.txt")]
    assert len(fetched) == 10 and long_link not in fetched
    assert stats["rag/links_not_followed_cap"] == 1
    home = next(read_item_file(p) for p in (tmp_path / "raw").glob("item_*")
                if read_item_file(p).title == "Home")  # fmt: skip
    assert len(home.links) == 10 and not any("/long/" in link for link in home.links)


def test_start_url_credentials_are_sent_as_basic_auth_and_never_shown(servers, tmp_path):
    import base64

    site, _ = servers
    secret = "pa55:w@rd"
    expected = "Basic " + base64.b64encode(f"crawler:{secret}".encode()).decode()
    seen_auth = []

    def protected(handler):
        seen_auth.append(handler.headers.get("Authorization"))
        if handler.headers.get("Authorization") != expected:
            return 401, {"Content-Type": "text/html"}, b"<h1>login</h1>"
        return 200, {"Content-Type": "text/html"}, _page("Members", "/inner")

    site.routes["/"] = protected
    site.routes["/inner"] = protected
    start = site.url("/").replace("://", "://crawler:pa55%3Aw%40rd@")
    stats_file = tmp_path / "stats.json"
    proc = subprocess.run(
        [sys.executable, "-m", "crawler", "--start-url", start, "--raw-dir", str(tmp_path / "raw"),
         "--stats-file", str(stats_file)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=CRAWL_TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert titles(tmp_path / "raw") == {"Members"}, (seen_auth, proc.stderr[-3000:])
    assert seen_auth and set(seen_auth) == {expected}
    shown = proc.stderr + stats_file.read_text()
    shown += "".join(p.read_text() for p in (tmp_path / "raw").glob("item_*"))
    for leak in ("pa55", "w@rd", "pa55%3Aw%40rd"):
        assert leak not in shown
