"""A warm embedding model shared by all ingestion runs: one long-lived process, local HTTP.

Every Dagster run is a new process; loading torch and the model costs ~7 s per run
(DESIGN.md). ``rag run`` (and ``make dev``) start this server once, and the
embedder resource sends it batches of texts. Vectors are identical to in-process
encoding: the same model, dtype and code path (``embedding.encode``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from rag_core import embedding

log = logging.getLogger(__name__)


class EmbeddingServerError(RuntimeError):
    """The server could not be reached or refused the request."""


class _Handler(BaseHTTPRequestHandler):
    server: _EmbeddingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug(format, *args)

    def _reply(self, code: int, body: bytes, content_type: str, headers: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, payload: dict) -> None:
        self._reply(code, json.dumps(payload).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path != "/health":
            self._json(404, {"error": "unknown path"})
            return
        self._json(200, self.server.describe())

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        if self.path != "/embed":
            self._json(404, {"error": "unknown path"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length))
            texts = request["texts"]
        except (ValueError, KeyError) as exc:
            self._json(400, {"error": f"bad request: {exc}"})
            return
        described = self.server.describe()
        if (request.get("model"), request.get("dtype")) != (described["model"], described["dtype"]):
            # A run configured for another model must not get this model's vectors.
            self._json(409, {"error": "model mismatch", **described})
            return
        vectors = self.server.encode(texts, int(request.get("batch_size", 64)))
        self._reply(
            200,
            vectors.astype("<f4").tobytes(),
            "application/octet-stream",
            {"X-Embedding-Shape": f"{vectors.shape[0]},{vectors.shape[1]}"},
        )


class _EmbeddingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model_name: str, dtype: str, threads: int):
        super().__init__(address, _Handler)
        self.model_name = embedding.resolve_model(model_name).name
        self.dtype = dtype
        self.model = embedding.load_model(model_name, dtype, threads)
        # One encode at a time: torch already uses every core for one batch.
        self._lock = threading.Lock()
        self.encoded = 0

    def describe(self) -> dict:
        return {
            "model": self.model_name,
            "dtype": self.dtype,
            "dimension": embedding.model_dimension(self.model),
            "encoded": self.encoded,
        }

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        with self._lock:
            vectors = embedding.encode(self.model, texts, batch_size)
            self.encoded += len(texts)
        return vectors


def serve(host: str, port: int, model_name: str, dtype: str, threads: int) -> _EmbeddingHTTPServer:
    """Load the model and bind the server (call ``serve_forever`` on the result)."""
    return _EmbeddingHTTPServer((host, port), model_name, dtype, threads)


def health(url: str, timeout: float = 2.0) -> dict | None:
    """The server's description, or None when nothing answers at ``url``."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def remote_encode(
    url: str, texts: list[str], model: str, dtype: str, batch_size: int, timeout: float = 600.0
) -> np.ndarray:
    """Embed ``texts`` on the server at ``url``; raise EmbeddingServerError if it cannot."""
    body = json.dumps(
        {"texts": texts, "model": model, "dtype": dtype, "batch_size": batch_size}
    ).encode()
    request = urllib.request.Request(
        f"{url.rstrip('/')}/embed", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            rows, dim = (int(n) for n in response.headers["X-Embedding-Shape"].split(","))
            data = response.read()
    except urllib.error.HTTPError as exc:
        raise EmbeddingServerError(
            f"embedding server at {url} refused: {exc.read()[:300]!r}"
        ) from exc
    except OSError as exc:
        raise EmbeddingServerError(f"embedding server at {url} unreachable: {exc}") from exc
    return np.frombuffer(data, dtype="<f4").reshape(rows, dim).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    """``python -m rag_core.embedding_server``: load the model, then serve until terminated."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", default=embedding.DEFAULT_MODEL)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--state-file", help="announce the server here once ready (rag_core.server_state)"
    )
    args = parser.parse_args(argv)
    server = serve(args.host, args.port, args.model, args.dtype, args.threads)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    url = f"http://{args.host}:{server.server_address[1]}"
    state = None
    if args.state_file:
        from pathlib import Path

        from rag_core import server_state

        # Written only now, with the model loaded: a reader never finds a server still loading.
        state = Path(args.state_file)
        server_state.write_state(
            state, server_state.ServerState(url, server.model_name, server.dtype, os.getpid())
        )
    print(f"embedding server ready at {url}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if state is not None:
            server_state.remove_state(state, os.getpid())
    server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
