"""A warm embedding model shared by all ingestion runs: one long-lived process, local HTTP.

Every Dagster run is a new process; loading torch and the model costs ~7 s per run
(docs/architecture.md, *Decisions and the facts behind them*). ``rag run`` (and
``make dev``) start this server once, and the embedder resource sends it batches of texts
(rag_core.embedders.server_client). Vectors are identical to in-process encoding: the server
encodes with the same Embedder (provider, model, dtype) that a run would load itself.

Any local process can reach a port on 127.0.0.1, so the server refuses abuse: every request
needs the session's random token (``Authorization: Bearer``); bodies, text counts and text
lengths are capped; a bad request gets a 400 naming what is wrong; connections and
encoding jobs wait in bounded queues (503 + Retry-After when full), served in arrival
order, so no client can hold the model for long or starve the others.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import queue
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from rag_core.embedders import PROVIDERS, Embedder, create_embedder
from rag_core.embedders.sentence_transformers import DEFAULT_MODEL, resolve_dtype
from rag_core.embedders.server_client import MAX_BODY_BYTES, MAX_TEXTS
from rag_core.settings import TOKEN_ENV, default, secret

log = logging.getLogger(__name__)

# Server limits (MAX_BODY_BYTES and MAX_TEXTS are shared with the client, which splits
# larger inputs to fit).
MAX_TEXT_CHARS = 100_000
DEFAULT_BATCH_SIZE = default("EMBEDDING_BATCH_SIZE")  # a request that names none
MAX_BATCH_SIZE = 1024
MAX_CONNECTIONS = 32  # handled at once; more are answered 503 at once
QUEUE_SIZE = 8  # encoding jobs waiting behind the one running; more are answered 503
READ_TIMEOUT_S = 10.0  # a client that stops sending mid-request is dropped after this
JOB_TIMEOUT_S = 300.0


class _Job:
    """One request's texts waiting for (or holding) the model."""

    def __init__(self, texts: list[str], batch_size: int):
        self.texts, self.batch_size = texts, batch_size
        self.done = threading.Event()
        self.vectors: np.ndarray | None = None
        self.error: str | None = None


class BadRequestError(ValueError):
    """The request is malformed; the message says how (sent back with a 400)."""


def parse_request(body: bytes) -> dict:
    """The validated fields of an /embed request body; BadRequestError names what is wrong."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"the body is not JSON ({exc})") from None
    if not isinstance(request, dict):
        raise BadRequestError(f"the body must be a JSON object, not {type(request).__name__}")
    texts = request.get("texts")
    if not isinstance(texts, list):
        raise BadRequestError("'texts' must be a list of strings")
    if len(texts) > MAX_TEXTS:
        raise BadRequestError(f"'texts' holds {len(texts)} texts; at most {MAX_TEXTS} per request")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadRequestError(f"texts[{index}] is a {type(text).__name__}, not a string")
        if len(text) > MAX_TEXT_CHARS:
            raise BadRequestError(
                f"texts[{index}] has {len(text)} characters; at most {MAX_TEXT_CHARS}"
            )
    batch_size = request.get("batch_size", DEFAULT_BATCH_SIZE)
    # bool is an int in Python: refuse it explicitly.
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise BadRequestError("'batch_size' must be a whole number")
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise BadRequestError(f"'batch_size' must be between 1 and {MAX_BATCH_SIZE}")
    for name in ("model", "dtype"):
        if not isinstance(request.get(name), str):
            raise BadRequestError(f"'{name}' must be a string")
    return {
        "texts": texts,
        "batch_size": batch_size,
        "model": request["model"],
        # A client may name ``auto``: it means what it means on this machine.
        "dtype": resolve_dtype(request["dtype"]),
    }


class _Handler(BaseHTTPRequestHandler):
    server: _EmbeddingHTTPServer
    timeout = READ_TIMEOUT_S  # socket timeout: a stalled client cannot hold a thread

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # The request line only; headers (which carry the token) are never logged.
        log.debug(format, *args)

    def _reply(self, code: int, body: bytes, content_type: str, headers: dict | None = None):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, payload: dict, headers: dict | None = None) -> None:
        self._reply(code, json.dumps(payload).encode(), "application/json", headers)

    def _authorised(self) -> bool:
        given = self.headers.get("Authorization", "")
        expected = f"Bearer {self.server.token}"
        if hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode()):
            return True
        self.close_connection = True
        self._drain()
        self._json(401, {"error": "missing or wrong token (Authorization: Bearer ...)"})
        return False

    def _drain(self, limit: int = 65536) -> None:
        """Read a small unread body before answering: closing a socket with unread data
        resets the connection, and the client would lose the answer."""
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return
        if 0 < length <= limit:
            with contextlib.suppress(OSError):
                self.rfile.read(length)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if not self._authorised():
            return
        if self.path != "/health":
            self._json(404, {"error": "unknown path"})
            return
        self._json(200, self.server.describe())

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering why it is not accepted."""
        self.close_connection = True  # one request per connection: nothing left unread
        raw = self.headers.get("Content-Length")
        if raw is None:
            self._json(411, {"error": "a Content-Length header is required"})
            return None
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            self._json(400, {"error": f"Content-Length {raw[:40]!r} is not a byte count"})
            return None
        if length > MAX_BODY_BYTES:
            self._json(413, {"error": f"the body exceeds {MAX_BODY_BYTES} bytes"})
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            return None  # the client went away mid-body: nobody to answer
        return body

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        if not self._authorised():
            return
        if self.path != "/embed":
            self.close_connection = True
            self._drain()
            self._json(404, {"error": "unknown path"})
            return
        body = self._read_body()
        if body is None:
            return
        try:
            request = parse_request(body)
        except BadRequestError as exc:
            self._json(400, {"error": f"bad request: {exc}"})
            return
        described = self.server.describe()
        if (request["model"], request["dtype"]) != (described["model"], described["dtype"]):
            # A run configured for another model must not get this model's vectors.
            self._json(409, {"error": "model mismatch", **described})
            return
        job = _Job(request["texts"], request["batch_size"])
        try:
            self.server.jobs.put_nowait(job)
        except queue.Full:
            self._json(503, {"error": "busy: too many requests queued"}, {"Retry-After": "1"})
            return
        if not job.done.wait(JOB_TIMEOUT_S) or job.vectors is None:
            self._json(500, {"error": f"encoding failed: {job.error or 'timed out'}"})
            return
        vectors = job.vectors
        self._reply(
            200,
            vectors.astype("<f4").tobytes(),
            "application/octet-stream",
            {"X-Embedding-Shape": f"{vectors.shape[0]},{vectors.shape[1]}"},
        )


class _EmbeddingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # listen backlog

    def __init__(self, address: tuple[str, int], embedder: Embedder, token: str):
        if not token:
            raise ValueError(f"the embedding server needs a token ({TOKEN_ENV})")
        super().__init__(address, _Handler)
        self.token = token
        self.embedder = embedder
        self.model_name = embedder.name
        self.dtype = embedder.dtype
        embedder.warm()
        self.encoded = 0
        self.connections = threading.BoundedSemaphore(MAX_CONNECTIONS)
        # One encode at a time (torch already uses every core for one batch), in arrival
        # order: a bounded FIFO served by one worker thread.
        self.jobs: queue.Queue[_Job] = queue.Queue(maxsize=QUEUE_SIZE)
        threading.Thread(target=self._encode_forever, daemon=True, name="encoder").start()

    def _encode_forever(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                job.vectors = self.embedder.encode(job.texts, job.batch_size)
                self.encoded += len(job.texts)
            except Exception as exc:  # noqa: BLE001 - reported to the client, server goes on
                log.exception("encoding failed")
                job.error = f"{type(exc).__name__}: {exc}"[:300]
            finally:
                job.done.set()

    def process_request(self, request, client_address) -> None:
        if not self.connections.acquire(blocking=False):
            # Too many connections at once: answer without a thread, and close.
            with contextlib.suppress(OSError):
                request.sendall(
                    b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 1\r\n"
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()

    def handle_error(self, request, client_address) -> None:
        # A client that hung up or stalled (a timed-out health probe, a hostile client) is
        # routine: one debug line, not a traceback per connection in the server's log.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            log.debug("connection from %s dropped: %s", client_address, sys.exc_info()[1])
            return
        super().handle_error(request, client_address)

    def describe(self) -> dict:
        return {
            "model": self.model_name,
            "dtype": self.dtype,
            "dimension": self.embedder.dimension,
            "encoded": self.encoded,
        }


def serve(
    host: str,
    port: int,
    model_name: str,
    dtype: str,
    threads: int,
    token: str,
    provider: str = "sentence-transformers",
) -> _EmbeddingHTTPServer:
    """Load the model and bind the server (call ``serve_forever`` on the result)."""
    embedder = create_embedder(provider, model_name, dtype, threads)
    return _EmbeddingHTTPServer((host, port), embedder, token)


def main(argv: list[str] | None = None) -> int:
    """``python -m rag_app.embedding_server``: load the model, then serve until terminated."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--provider", default="sentence-transformers", choices=PROVIDERS)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    # auto: bfloat16 where the CPU has native BF16, else float32 (EMBEDDING_DTYPE); the server
    # describes and announces the resolved precision.
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--state-file", help="announce the server here once ready (rag_core.server_state)"
    )
    args = parser.parse_args(argv)
    # From the environment, never the command line (other users can read argv in ps).
    token = secret(TOKEN_ENV)
    if not token:
        parser.error(f"set {TOKEN_ENV} to the token clients must send (rag run makes one)")
    server = serve(
        args.host, args.port, args.model, args.dtype, args.threads, token, args.provider
    )
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    url = f"http://{args.host}:{server.server_address[1]}"
    state = None
    if args.state_file:
        from pathlib import Path

        from rag_core import server_state

        # Written only now, with the model loaded: a reader never finds a server still loading.
        state = Path(args.state_file)
        announced = server_state.ServerState(
            url, server.model_name, server.dtype, os.getpid(), token=token
        )
        server_state.write_state(state, announced)
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
