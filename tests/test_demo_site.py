"""Tests for the bundled demo site generator and its static HTTP server."""

from __future__ import annotations

import http.client
import posixpath
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path

import pytest
from lxml import html as lxml_html

from demo_site.generate import generate_site
from demo_site.serve import SiteServer
from demo_site.site import BROKEN_LINKS, EXTERNAL_URL, PRIVATE_PAGE
from demo_site.synthetic import BROKEN_PREFIX

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled demo site, generated once for the module."""
    out = tmp_path_factory.mktemp("demo")
    generate_site(out)
    return out


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic 120-page site, generated once for the module."""
    out = tmp_path_factory.mktemp("synth")
    generate_site(out, n_pages=120, seed=11)
    return out


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root keyed by relative POSIX path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _html_files(root: Path) -> list[str]:
    """Sorted relative paths of the HTML files under root."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html"))


def _parse(root: Path, rel: str):
    """Parse one generated page with lxml."""
    return lxml_html.fromstring((root / rel).read_bytes())


def _article_words(doc) -> int:
    """Word count of the page's <article> content."""
    return len(doc.xpath("//article")[0].text_content().split())


def _internal_targets(rel: str, doc) -> list[str]:
    """Site-relative paths of the HTML pages a page links to (fragments/external dropped)."""
    out = []
    for href in doc.xpath("//a/@href"):
        href = href.split("#")[0]
        if not href or re.match(r"^[a-z]+:", href):
            continue
        if href.startswith("/"):
            target = href.lstrip("/")
        else:
            target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), href))
        if target.endswith(".html"):
            out.append(target)
    return out


# --- generator ---------------------------------------------------------------------------


@pytest.mark.parametrize("n_pages,seed", [(None, 0), (40, 7)])
def test_generation_is_byte_identical(tmp_path: Path, n_pages: int | None, seed: int) -> None:
    """Two generations with the same arguments produce identical files."""
    a = generate_site(tmp_path / "a", n_pages, seed)
    b = generate_site(tmp_path / "b", n_pages, seed)
    assert a == b
    tree_a, tree_b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert tree_a.keys() == tree_b.keys()
    assert {k for k in tree_a if tree_a[k] != tree_b[k]} == set()


def test_seed_changes_synthetic_site(tmp_path: Path) -> None:
    """Different seeds give different synthetic content."""
    generate_site(tmp_path / "a", 30, seed=1)
    generate_site(tmp_path / "b", 30, seed=2)
    assert _tree(tmp_path / "a") != _tree(tmp_path / "b")


def test_bundled_site_shape(demo_dir: Path) -> None:
    """The demo site has 45-60 pages, a root index, sub-folders and the private page."""
    pages = _html_files(demo_dir)
    assert 45 <= len(pages) <= 60
    assert generate_site(demo_dir) == pages  # return value is the sorted list of written pages
    for required in (
        "index.html",
        "docs/install/linux.html",
        "docs/install/windows.html",
        "docs/configuration/retries.html",
        "changelog.html",
        PRIVATE_PAGE,
    ):
        assert required in pages


@pytest.mark.parametrize("n", [1, 5, 20, 137])
def test_synthetic_page_count_is_exact(tmp_path: Path, n: int) -> None:
    """n_pages=N writes exactly N HTML pages including index.html."""
    paths = generate_site(tmp_path, n_pages=n, seed=3)
    assert len(paths) == n
    assert _html_files(tmp_path) == paths
    assert "index.html" in paths


def test_every_page_has_boilerplate(demo_dir: Path, synth_dir: Path) -> None:
    """Header, top nav, sidebar, breadcrumb, main/article, footer and cookie banner everywhere."""
    checks = {
        "header": "//header[contains(@class,'site-header')]",
        "top nav": "//header//nav//a",
        "sidebar": "//aside[contains(@class,'sidebar')]//a",
        "breadcrumb": "//nav[contains(@class,'breadcrumb')]",
        "main": "//main/article/h1",
        "footer": "//footer[contains(@class,'copyright') or .//p[@class='copyright']]",
        "cookie": "//div[@id='cookie-banner']",
    }
    for root in (demo_dir, synth_dir):
        pages = _html_files(root)
        assert pages, f"no pages under {root}"  # an empty site would pass the loop unchecked
        for rel in pages:
            doc = _parse(root, rel)
            missing = [name for name, xp in checks.items() if not doc.xpath(xp)]
            assert missing == [], f"{rel} lacks {missing}"


def test_bundled_site_has_rich_structure(demo_dir: Path) -> None:
    """Code blocks (with meaningful indentation), tables, lists and h2/h3 headings occur."""
    counts = {"pre": 0, "table": 0, "ul": 0, "ol": 0, "h2": 0, "h3": 0}
    indented_code = 0
    for rel in _html_files(demo_dir):
        doc = _parse(demo_dir, rel)
        for tag in counts:
            counts[tag] += len(doc.xpath(f"//article//{tag}"))
        for code in doc.xpath("//article//pre/code"):
            lines = code.text_content().split("\n")
            indented_code += any(line.startswith("    ") for line in lines)
    assert counts["pre"] >= 30 and counts["table"] >= 10
    assert counts["ul"] >= 15 and counts["ol"] >= 5
    assert counts["h2"] >= 100 and counts["h3"] >= 30
    assert indented_code >= 10


def test_bundled_site_mixes_long_and_short_pages(demo_dir: Path) -> None:
    """Some pages are 2,000-4,000 words long, others 50-200 words."""
    words = {rel: _article_words(_parse(demo_dir, rel)) for rel in _html_files(demo_dir)}
    long_pages = [r for r, w in words.items() if 2000 <= w <= 4000]
    short_pages = [r for r, w in words.items() if w <= 200]
    assert len(long_pages) >= 3, long_pages
    assert len(short_pages) >= 5
    assert all(w >= 30 for w in words.values())


def test_bundled_content_answers_real_questions(demo_dir: Path) -> None:
    """Pages carry the topical prose that semantic searches should find."""

    def text(rel: str) -> str:
        return _parse(demo_dir, rel).xpath("//article")[0].text_content()

    assert "winget install" in text("docs/install/windows.html")
    assert "max_attempts" in text("docs/configuration/retries.html")
    assert "exponential" in text("docs/configuration/retries.html").lower()
    changelog = text("changelog.html")
    assert "2.0.0" in changelog and "Python 3.7 and 3.8" in changelog


def test_bundled_links_resolve_except_intended_broken(demo_dir: Path) -> None:
    """Internal links resolve, except the 3-5 deliberately broken ones; one external URL."""
    existing = set(_html_files(demo_dir))
    broken: set[str] = set()
    externals: set[str] = set()
    linked: set[str] = set()
    for rel in existing:
        doc = _parse(demo_dir, rel)
        externals |= {h for h in doc.xpath("//a/@href") if h.startswith(("http:", "https:"))}
        for target in _internal_targets(rel, doc):
            linked.add(target)
            if target not in existing:
                broken.add(target)
    assert broken == set(BROKEN_LINKS)
    assert 3 <= len(BROKEN_LINKS) <= 5
    assert externals == {EXTERNAL_URL}
    assert PRIVATE_PAGE in linked  # a crawler meets it and must respect robots.txt


def test_synthetic_pages_reachable_and_few_broken_links(synth_dir: Path) -> None:
    """Every page is reachable from index.html within depth 2; only the planted links break."""
    existing = set(_html_files(synth_dir))
    depth = {"index.html": 0}
    queue = deque(["index.html"])
    broken: set[str] = set()
    while queue:
        rel = queue.popleft()
        for target in _internal_targets(rel, _parse(synth_dir, rel)):
            if target not in existing:
                broken.add(target)
            elif target not in depth:
                depth[target] = depth[rel] + 1
                queue.append(target)
    assert set(depth) == existing
    assert max(depth.values()) <= 2
    assert len(broken) == 2 and all(b.startswith(BROKEN_PREFIX) for b in broken)


def test_synthetic_lengths_are_long_tailed(synth_dir: Path) -> None:
    """Page lengths have a median near 600 words and a long tail."""
    words = [
        _article_words(_parse(synth_dir, rel))
        for rel in _html_files(synth_dir)
        if not rel.endswith("index.html")
    ]
    assert 350 <= statistics.median(words) <= 900
    assert max(words) >= 3 * statistics.median(words)
    assert min(words) < statistics.median(words) / 2


def test_robots_and_sitemap(demo_dir: Path) -> None:
    """robots.txt disallows /private/; the sitemap lists every public page and no private one."""
    robots = (demo_dir / "robots.txt").read_text()
    assert "User-agent: *" in robots and "Disallow: /private/" in robots
    locs = re.findall(r"<loc>(.*?)</loc>", (demo_dir / "sitemap.xml").read_text())
    public = {p for p in _html_files(demo_dir) if not p.startswith("private/")}
    assert {loc.lstrip("/") for loc in locs} == public


def test_regeneration_removes_stale_files_only(tmp_path: Path) -> None:
    """Regenerating deletes old pages and emptied folders but keeps foreign files."""
    generate_site(tmp_path, 40, seed=1)
    (tmp_path / "notes.md").write_text("keep me")
    paths = generate_site(tmp_path, 5, seed=2)
    assert _html_files(tmp_path) == paths
    assert (tmp_path / "notes.md").read_text() == "keep me"
    empty_dirs = [d for d in tmp_path.rglob("*") if d.is_dir() and not any(d.iterdir())]
    assert empty_dirs == []


@pytest.mark.e2e
def test_generate_cli(tmp_path: Path) -> None:
    """`python -m demo_site.generate` writes the requested number of pages."""
    out = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "demo_site.generate",
            "--out",
            str(out),
            "--pages",
            "12",
            "--seed",
            "3",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(_html_files(out)) == 12
    assert "Wrote 12 pages" in proc.stdout


# --- server ------------------------------------------------------------------------------


def _get(url: str) -> tuple[int, str, bytes, str]:
    """GET a URL; return (status, content type, body, final URL) also for HTTP errors."""
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read(), resp.url
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read(), url


@pytest.mark.e2e
def test_server_serves_pages_and_content_types(demo_dir: Path, capfd) -> None:
    """Pages, robots.txt, sitemap.xml, directory indexes and 404s over a real socket."""
    with SiteServer(demo_dir) as srv:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", srv.url)
        status, ctype, body, _ = _get(srv.url)
        assert (status, ctype) == (200, "text/html; charset=utf-8")
        assert body == (demo_dir / "index.html").read_bytes()
        status, _, body, _ = _get(srv.url + "docs/install/linux.html")
        assert status == 200 and body == (demo_dir / "docs/install/linux.html").read_bytes()
        assert _get(srv.url + "robots.txt")[:2] == (200, "text/plain; charset=utf-8")
        assert _get(srv.url + "sitemap.xml")[:2] == (200, "application/xml")
        status, _, body, final = _get(srv.url + "docs/install")  # redirected to the slash form
        assert status == 200 and final.endswith("/docs/install/")
        assert body == (demo_dir / "docs/install/index.html").read_bytes()
        status, ctype, body, _ = _get(srv.url + "docs/install/freebsd.html")
        assert (status, ctype) == (404, "text/html; charset=utf-8")
        assert b"Not Found" in body
        assert srv.request_count == 7  # the redirect costs one extra request
    assert capfd.readouterr().err == ""  # quiet by default


@pytest.mark.e2e
def test_server_head_request(demo_dir: Path) -> None:
    """HEAD returns headers with the real length and no body."""
    with SiteServer(demo_dir) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("HEAD", "/faq.html")
        resp = conn.getresponse()
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) == (demo_dir / "faq.html").stat().st_size
        assert resp.read() == b""
        conn.close()


@pytest.mark.e2e
def test_server_refuses_path_traversal(tmp_path: Path) -> None:
    """Requests that escape the root get 403 and never leak files outside it."""
    root = tmp_path / "site"
    root.mkdir()
    (root / "index.html").write_text("<h1>home</h1>")
    (tmp_path / "secret.txt").write_text("TOP-SECRET")
    with SiteServer(root) as srv:
        for path in (
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/docs/../../secret.txt",
            "/..%5csecret.txt",
        ):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
            conn.request("GET", path)  # http.client sends the path verbatim, unlike browsers
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            assert resp.status in (403, 404), path
            assert b"TOP-SECRET" not in body


@pytest.mark.e2e
def test_server_latency(demo_dir: Path) -> None:
    """latency_ms delays every response; without it requests are fast."""
    with SiteServer(demo_dir, latency_ms=200) as slow, SiteServer(demo_dir) as fast:
        t0 = time.perf_counter()
        assert _get(slow.url + "index.html")[0] == 200
        slow_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        assert _get(fast.url + "index.html")[0] == 200
        fast_s = time.perf_counter() - t0
    assert slow_s >= 0.2
    assert fast_s < 0.2


@pytest.mark.e2e
def test_server_stop_closes_socket(demo_dir: Path) -> None:
    """After stop() the port no longer accepts connections and stop() is idempotent."""
    srv = SiteServer(demo_dir).start()
    url = srv.url
    assert _get(url)[0] == 200
    srv.stop()
    srv.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


@pytest.mark.e2e
def test_serve_cli_exits_zero_on_sigterm(demo_dir: Path) -> None:
    """`python -m demo_site.serve` announces its URL, serves, and exits 0 on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "demo_site.serve", "--root", str(demo_dir), "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.fullmatch(r"Serving (.+) at (http://127\.0\.0\.1:\d+/)\n", line)
        assert match, line
        assert _get(match.group(2) + "changelog.html")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
