"""`rag serve`: the JSON API and the search page, in Debian's headless Chromium.

A real `rag serve` process (real model, real DuckDB file built from some demo-site pages) on a
free port; the page is driven by Selenium through chromium-driver (apt: chromium,
chromium-driver; installed by the Makefile's `browser` target)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from rag_app.evaluation import ChunkingOptions, build_index
from rag_core.embedders import embedder_from_settings
from rag_core.settings import PROJECT_ROOT
from tests.helpers import free_port, settings_for

SITE = PROJECT_ROOT / "data" / "demo_site"
KEEP = ("docs/install/", "faq.html", "docs/troubleshooting/")


def get(url: str, timeout: float = 60) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    settings = settings_for(tmp)
    exclude = tuple(
        p.relative_to(SITE).as_posix()
        for p in SITE.rglob("*.html")
        if not p.relative_to(SITE).as_posix().startswith(KEEP)
    )
    build_index(
        SITE, "http://127.0.0.1:8765/", settings.duckdb_path,
        ChunkingOptions.from_settings(settings), embedder_from_settings(settings, server_url=""),
        exclude,
    )  # fmt: skip
    port = free_port()
    env = dict(os.environ, DATA_DIR=str(tmp), DUCKDB_PATH=str(settings.duckdb_path))
    env.pop("EMBEDDING_SERVER_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag_app.cli", "serve", "--port", str(port)],
        env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if get(base + "/healthz", timeout=5)[0] == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"rag serve did not start: {proc.stdout.read()}")
        time.sleep(0.3)
    yield base, settings
    proc.terminate()
    proc.wait(timeout=30)


def test_healthz_and_binding(server):
    base, _ = server
    status, body = get(base + "/healthz")
    assert status == 200 and body["status"] == "ok" and body["chunks"] > 10
    assert base.startswith("http://127.0.0.1:")


def test_search_api_answers_json_in_every_mode(server):
    base, _ = server
    for mode in ("hybrid", "vector", "keyword"):
        status, body = get(f"{base}/search?q=install+on+Windows+with+winget&k=3&mode={mode}")
        assert status == 200, body
        assert body["mode"] == mode and len(body["results"]) == 3
        top = body["results"][0]
        assert {"rank", "score", "title", "url", "heading", "snippet"} <= set(top)
        assert top["url"].endswith(("/docs/install/windows.html", "/faq.html")), (mode, top)


def test_search_api_by_page_and_filters(server):
    base, _ = server
    prefix = "http://127.0.0.1:8765/docs/install/"
    status, body = get(f"{base}/search?q=install&k=10&by_page=1&url_prefix={prefix}")
    assert status == 200
    urls = [r["url"] for r in body["results"]]
    assert urls and len(urls) == len(set(urls))
    assert all("/docs/install/" in u for u in urls)


def test_search_api_rejects_bad_input(server):
    base, _ = server
    assert get(f"{base}/search?q=x&k=zero")[0] == 400
    assert get(f"{base}/search?q=x&k=1000")[0] == 400
    status, body = get(f"{base}/search?q=x&mode=fuzzy")
    assert status == 400 and "unknown search mode" in body["error"]
    assert get(f"{base}/search?q=")[0] == 400
    assert get(f"{base}/nope")[0] == 404


def test_search_waits_out_a_writer_holding_the_file(server):
    """While ingestion holds the DuckDB file for writing, a search waits and then answers."""
    base, settings = server
    holder = subprocess.Popen(
        [sys.executable, "-c",
         f"import duckdb, time; c = duckdb.connect({str(settings.duckdb_path)!r}); "
         "print('held', flush=True); time.sleep(3); c.close()"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        status, body = get(f"{base}/search?q=database+is+locked&k=2&mode=hybrid")
        assert status == 200 and body["results"]
        assert time.monotonic() - started > 1  # it really waited for the writer
    finally:
        holder.wait(timeout=30)


def test_search_page_in_headless_chromium(server, tmp_path):
    """Type a question, submit, see ranked results with titles, links, headings, snippets."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("chromium and chromedriver are missing: run `make browser` (apt-get)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, _ = server
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        driver.get(base + "/")
        box = driver.find_element(By.ID, "q")
        box.send_keys("how do I install Lumen on Windows")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        WebDriverWait(driver, 60).until(
            ec.presence_of_all_elements_located((By.CSS_SELECTOR, "li.hit"))
        )
        hits = driver.find_elements(By.CSS_SELECTOR, "li.hit")
        assert len(hits) >= 3
        first = hits[0]
        link = first.find_element(By.CSS_SELECTOR, "a.t")
        assert "Windows" in link.text or "questions" in link.text
        assert link.get_attribute("href").endswith((".html",))
        assert first.find_element(By.CSS_SELECTOR, ".s").text.strip()
        assert any(h.find_elements(By.CSS_SELECTOR, ".h") for h in hits)  # heading paths
        status = driver.find_element(By.ID, "status").text
        assert "results (hybrid" in status
        shot = Path(os.environ.get("SEARCH_SCREENSHOT", tmp_path / "search.png"))
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 5000
    finally:
        driver.quit()
