"""``rag serve``: a small HTTP query API and search page over the DuckDB store.

``GET /search?q=&k=&mode=&by_page=&url_prefix=&title=`` answers JSON, ``GET /healthz`` says
whether the store can be read, ``GET /`` is a search page. Every request opens the store
briefly (read-only, retried while ingestion holds it), so the server works while ingestion
writes. Binds to 127.0.0.1 unless told otherwise: the API has no authentication.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from rag_app import search as search_mod
from rag_core import stores
from rag_core.settings import Settings

log = logging.getLogger(__name__)

MAX_K = 100

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Search</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}
 form{display:flex;gap:.5rem;margin-bottom:1.5rem}
 input[type=search]{flex:1;font-size:1.1rem;padding:.4rem}
 select,button{font-size:1rem} ol{padding-left:1.2rem} li{margin-bottom:1.1rem}
 .t{font-size:1.1rem} .u{color:#1a6b2f;font-size:.85rem} .h{color:#555;font-size:.9rem}
 .s{margin:.2rem 0} .err{color:#a00}
</style></head><body>
<h1>Search</h1>
<form id="f"><input type="search" id="q" name="q" placeholder="Ask a question" autofocus>
<select id="mode" name="mode">
<option>hybrid</option><option>vector</option><option>keyword</option></select>
<label><input type="checkbox" id="bypage" checked> pages</label>
<button type="submit">Search</button></form>
<div id="status"></div><ol id="results"></ol>
<script>
const f = document.getElementById('f');
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text) e.textContent = text; return e; }
f.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const q = document.getElementById('q').value, mode = document.getElementById('mode').value;
  const byPage = document.getElementById('bypage').checked ? '1' : '0';
  const status = document.getElementById('status'), list = document.getElementById('results');
  list.replaceChildren(); status.textContent = 'Searching…'; status.className = '';
  const r = await fetch('/search?' + new URLSearchParams({q, k: '10', mode, by_page: byPage}));
  const body = await r.json();
  if (!r.ok) { status.textContent = body.error; status.className = 'err'; return; }
  status.textContent =
    body.results.length + ' results (' + body.mode + ', ' + body.took_ms + ' ms)';
  for (const hit of body.results) {
    const li = el('li', 'hit'); const a = el('a', 't', hit.title || hit.url); a.href = hit.url;
    li.append(a, el('div', 'u', hit.url));
    if (hit.heading) li.append(el('div', 'h', '§ ' + hit.heading));
    li.append(el('p', 's', hit.snippet)); list.append(li);
  }
});
</script></body></html>
"""


class SearchServer(ThreadingHTTPServer):
    """The HTTP server; holds the settings and one embedder shared by all requests."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], settings: Settings, embedder=None):
        super().__init__(address, Handler)
        self.settings = settings
        self.embedder = embedder or search_mod.embedder_for(settings)
        # One query at a time through the model: torch already uses every core per query.
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    """GET /, /search and /healthz."""

    server: SearchServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        log.info("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        url = urlsplit(self.path)
        if url.path == "/":
            self._send(200, PAGE.encode(), "text/html; charset=utf-8")
        elif url.path == "/healthz":
            self._healthz()
        elif url.path == "/search":
            self._search(parse_qs(url.query))
        else:
            self._json(404, {"error": f"no such path: {url.path}"})

    def _healthz(self) -> None:
        store = stores.open_store(self.server.settings, 5)
        try:
            if not store.exists():
                raise FileNotFoundError(f"{store} holds nothing yet")
            chunks = store.table_counts()["chunks"]
        except Exception as exc:  # noqa: BLE001 - reported to the caller as unhealthy
            self._json(503, {"status": "unavailable", "error": str(exc)})
            return
        self._json(200, {"status": "ok", "chunks": chunks})

    def _search(self, params: dict[str, list[str]]) -> None:
        def one(name: str, default: str = "") -> str:
            return params.get(name, [default])[0]

        question = one("q")
        mode = one("mode", search_mod.DEFAULT_MODE)
        try:
            k = int(one("k", "10"))
        except ValueError:
            self._json(400, {"error": f"k must be a whole number, got {one('k')!r}"})
            return
        if not 1 <= k <= MAX_K:
            self._json(400, {"error": f"k must be between 1 and {MAX_K}, got {k}"})
            return
        import time

        started = time.monotonic()
        try:
            with self.server.lock:
                hits = search_mod.search(
                    self.server.settings,
                    question,
                    k,
                    self.server.embedder,
                    mode=mode,
                    by_page=one("by_page", "0") in ("1", "true", "yes"),
                    url_prefix=one("url_prefix"),
                    title=one("title"),
                )
        except search_mod.SearchError as exc:
            self._json(400, {"error": str(exc)})
            return
        except stores.StoreLockedError as exc:
            self._json(503, {"error": str(exc)})
            return
        self._json(
            200,
            {
                "q": question,
                "mode": mode,
                "k": k,
                "took_ms": round(1000 * (time.monotonic() - started), 1),
                "results": [h.as_dict() | {"snippet": h.snippet()} for h in hits],
            },
        )

    def _json(self, status: int, body: dict) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8780) -> int:
    """Serve until interrupted."""
    server = SearchServer((host, port), settings)
    print(f"rag serve: http://{host}:{server.server_port}/ (store {settings.duckdb_path})")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
