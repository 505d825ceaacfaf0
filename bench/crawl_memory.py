"""Peak RSS of one crawl process on hostile pages (issue 10, point 2).

``python -m bench.crawl_memory`` serves, on 127.0.0.1, a 50 MB page with a Content-Length,
the same 50 MB streamed without one, and a page with 100,000 links, then crawls each with
``python -m crawler --max-pages 1`` in a fresh process and prints that process's peak RSS
(``ru_maxrss`` of the waited child), what was kept, and how long it took.
``--repo PATH`` runs the crawler of another checkout (to compare with an older version).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAGE_BYTES = 50 * 1024 * 1024
LINKS = 100_000
MEASURE = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
)


def _many_links() -> bytes:
    links = "".join(f'<a href="/l/{i}">l{i}</a>' for i in range(LINKS))
    return f"<html><title>Links</title><body>{links}</body></html>".encode()


class _Handler(BaseHTTPRequestHandler):
    many = b""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path == "/many":
            self._send(self.many)
            return
        if self.path not in ("/big-length", "/big-streamed"):
            self._send(b"", status=404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        if self.path == "/big-length":
            self.send_header("Content-Length", str(PAGE_BYTES))
        self.end_headers()
        piece = (b"<p>" + b"x" * 1017 + b"</p>") * 1024  # 1 MiB: the server never holds 50
        try:
            for _ in range(PAGE_BYTES // len(piece)):
                self.wfile.write(piece)
        except OSError:
            pass  # the crawler stopped reading at its cap
        self.close_connection = True

    def _send(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def measure(repo: Path, url: str) -> dict:
    """Crawl ``url`` with the crawler of ``repo``; its peak RSS and what it kept."""
    out = Path(tempfile.mkdtemp(prefix="crawl-memory-"))
    cmd = [
        sys.executable, "-c", MEASURE, sys.executable, "-m", "crawler", "--start-url", url,
        "--raw-dir", str(out / "raw"), "--stats-file", str(out / "stats.json"),
        "--max-pages", "1", "--log-level", "WARNING",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, check=True)
    stats = json.loads((out / "stats.json").read_text())
    items = [json.loads(p.read_text()) for p in (out / "raw").glob("item_*")]
    return {
        "peak_rss_mb": int(proc.stdout.split()[-1]),
        "items_saved": len(items),
        "html_chars_kept": sum(len(i["html"]) for i in items),
        "links_stored": sum(len(i["links"]) for i in items),
        "elapsed_s": stats.get("elapsed_seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    _Handler.many = _many_links()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for path in ("/big-length", "/big-streamed", "/many"):
            print(f"{path}: {measure(args.repo, base + path)}", flush=True)
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
