"""A small, quiet static HTTP server for the demo site, with optional simulated latency."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from urllib.parse import unquote, urlsplit

# Where `python -m demo_site.generate` writes the site that `rag run` crawls without START_URLS.
DEMO_SITE_ROOT = Path(__file__).resolve().parent.parent / "data" / "demo_site"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
}

_NOT_FOUND = (
    b'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>404 Not Found</title>'
    b"</head>\n<body><h1>Not Found</h1><p>The requested URL was not found on this server.</p>"
    b"</body></html>\n"
)


def content_type(path: Path) -> str:
    """Content-Type header value for a file, by extension."""
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def resolve_path(root: Path, url_path: str) -> Path | None:
    """Map a URL path onto a file or directory under root; None if it would escape root."""
    rel = unquote(urlsplit(url_path).path)
    if "\x00" in rel or "\\" in rel:
        return None
    target = (root / rel.lstrip("/")).resolve()
    # resolve() collapses '..' and symlinks, so containment is checked on the real path.
    return target if target == root or target.is_relative_to(root) else None


class _Handler(BaseHTTPRequestHandler):
    """Request handler bound to one SiteServer (set as a class attribute per server)."""

    site: SiteServer
    protocol_version = "HTTP/1.1"
    timeout = 10  # drop idle keep-alive connections instead of holding threads forever
    server_version = "DemoSite/1.0"

    def do_GET(self) -> None:
        """Serve a GET request."""
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        """Serve a HEAD request (headers only)."""
        self._respond(send_body=False)

    def _respond(self, send_body: bool) -> None:
        """Simulate latency, then send the file, a redirect, a 403 or a 404."""
        self.site._count()
        if self.site.latency_ms > 0:
            time.sleep(self.site.latency_ms / 1000.0)
        target = resolve_path(self.site.root, self.path)
        if target is None:
            self._send(HTTPStatus.FORBIDDEN, b"Forbidden\n", "text/plain; charset=utf-8", send_body)
            return
        if target.is_dir():
            if not urlsplit(self.path).path.endswith("/"):
                # Redirect so relative links inside the directory's index.html resolve correctly.
                self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                self.send_header("Location", urlsplit(self.path).path + "/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            target = target / "index.html"
        if not target.is_file():
            self._send(HTTPStatus.NOT_FOUND, _NOT_FOUND, CONTENT_TYPES[".html"], send_body)
            return
        self._send(HTTPStatus.OK, target.read_bytes(), content_type(target), send_body)

    def _send(self, status: HTTPStatus, body: bytes, ctype: str, send_body: bool) -> None:
        """Write status, headers and (unless HEAD) the body."""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Log to stderr only when the server was created with quiet=False."""
        if not self.site.quiet:
            super().log_message(format, *args)


class SiteServer:
    """Static file server for a generated site, running in a daemon thread; a context manager."""

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        quiet: bool = True,
    ):
        """Configure the server; nothing listens until start()."""
        self.root = Path(root).resolve()
        self.host = host
        self.port = port
        self.latency_ms = float(latency_ms)
        self.quiet = quiet
        self._requests = 0
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def request_count(self) -> int:
        """Number of requests received so far (all methods and statuses)."""
        with self._lock:
            return self._requests

    def _count(self) -> None:
        """Increment the request counter; handlers run on many threads at once."""
        with self._lock:
            self._requests += 1

    @property
    def url(self) -> str:
        """Base URL with trailing slash, e.g. http://127.0.0.1:8000/."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return f"http://{self.host}:{self.port}/"

    def start(self) -> SiteServer:
        """Bind the socket and serve in a background daemon thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        if not self.root.is_dir():
            raise FileNotFoundError(f"site root does not exist: {self.root}")
        handler = type("BoundHandler", (_Handler,), {"site": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"SiteServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket; safe to call twice."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> SiteServer:
        """Start the server when entering a with-block."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop the server when leaving a with-block."""
        self.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def serve_demo_site(port: int, root: Path = DEMO_SITE_ROOT) -> Iterator[str]:
    """Serve the bundled demo site on a fixed port (fixed: item keys include host and port).

    If something already answers there (``rag run`` or an earlier crawl), it is reused.
    Here, not in the crawl resource or the runner, so that both can use it: this package
    imports nothing of the project.
    """
    url = f"http://127.0.0.1:{port}/"
    if _answers(url):
        yield url
        return
    server = SiteServer(root, host="127.0.0.1", port=port)
    server.start()
    try:
        yield url
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: serve until SIGINT/SIGTERM, then exit 0."""
    ap = argparse.ArgumentParser(prog="python -m demo_site.serve", description=__doc__)
    ap.add_argument("--root", type=Path, default=Path("data/demo_site"), help="site directory")
    ap.add_argument("--host", default="127.0.0.1", help="interface to bind")
    ap.add_argument("--port", type=int, default=8000, help="port (0 = pick a free one)")
    ap.add_argument("--latency-ms", type=float, default=0.0, help="delay added to each request")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = ap.parse_args(argv)
    if not args.root.is_dir():
        print(f"error: site root {args.root} does not exist", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    server = SiteServer(args.root, args.host, args.port, args.latency_ms, quiet=not args.verbose)
    server.start()
    print(f"Serving {server.root} at {server.url}", flush=True)
    # Short waits keep the main thread responsive to signals on every platform.
    while not stop.wait(0.2):
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
