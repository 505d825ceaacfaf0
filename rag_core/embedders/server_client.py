"""The warm embedding server's client: an Embedder that sends texts to the server
(rag_app.embedding_server) and falls back to its local twin when the server is gone.

The server is an accelerator, not a dependency: every Dagster run is a new process, and
loading torch and the model costs ~7 s per run, so ``rag run`` starts one server and runs
send it their batches. Its vectors are those of the local embedder (same provider, model,
dtype and code path), so the client reports the local embedder's name, dimension, tokenizer
and identity, and uses it when the server cannot answer.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request

import numpy as np

from rag_core.embedders.base import Embedder, EmbedderError

log = logging.getLogger(__name__)

# The server's limits on one request (it answers 400/413 beyond them); the client splits
# larger inputs to fit. A chunk is ~224 tokens (~1-2 KB).
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_TEXTS = 256


class EmbeddingServerError(EmbedderError):
    """The server could not be reached or refused the request."""


class ServerClientEmbedder(Embedder):
    """Embeds through the warm server at ``url``; ``fallback`` when it cannot answer.

    ``keep_trying``: ask the server again on the next call after a failure (ingestion, where
    a failed connect costs little); otherwise stay with the fallback (search: once gone, the
    server of a finished session does not come back).
    """

    def __init__(
        self,
        url: str,
        token: str,
        fallback: Embedder,
        timeout: float = 600.0,
        keep_trying: bool = True,
    ):
        self.url = url
        self.token = token
        self.fallback = fallback
        self.timeout = timeout
        self.keep_trying = keep_trying
        self.provider = fallback.provider  # type: ignore[misc] - per instance: the twin's
        self.dtype = fallback.dtype
        self.batch_size = fallback.batch_size
        self.slowdown_ms = fallback.slowdown_ms
        fallback.slowdown_ms = 0  # applied once, by this embedder's ``embed``

    @property
    def name(self) -> str:
        return self.fallback.name

    @property
    def dimension(self) -> int:
        return self.fallback.dimension

    @property
    def tokenizer(self):
        return self.fallback.tokenizer

    def identity(self) -> dict[str, str]:
        return self.fallback.identity()

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, str]:
        if self.url:
            try:
                vectors = remote_encode(
                    self.url, texts, self.name, self.dtype, self.batch_size, self.token,
                    self.timeout,
                )  # fmt: skip
                return vectors, f"server {self.url}"
            except EmbeddingServerError as exc:
                log.warning("%s; loading the model in this process instead", exc)
                if not self.keep_trying:
                    self.url = ""
        return self.fallback._embed(texts)

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        return self._embed(texts)[0]


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def health(url: str, token: str, timeout: float = 2.0) -> dict | None:
    """The server's description, or None when nothing (willing) answers at ``url``."""
    request = urllib.request.Request(f"{url.rstrip('/')}/health", headers=_headers(token))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def _slices(texts: list[str]) -> list[list[str]]:
    """``texts`` split into requests within the server's limits on count and body size."""
    budget = MAX_BODY_BYTES // 2  # JSON escaping can double a text's bytes
    slices: list[list[str]] = [[]]
    size = 0
    for text in texts:
        cost = len(text.encode("utf-8", "replace")) * 2 + 8
        if slices[-1] and (len(slices[-1]) >= MAX_TEXTS or size + cost > budget):
            slices.append([])
            size = 0
        slices[-1].append(text)
        size += cost
    return slices


def remote_encode(
    url: str,
    texts: list[str],
    model: str,
    dtype: str,
    batch_size: int,
    token: str,
    timeout: float = 600.0,
) -> np.ndarray:
    """Embed ``texts`` on the server at ``url``; raise EmbeddingServerError if it cannot."""
    parts = [
        _post(url, chunk, model, dtype, batch_size, token, timeout) for chunk in _slices(texts)
    ]
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def _post(url, texts, model, dtype, batch_size, token, timeout) -> np.ndarray:
    body = json.dumps(
        {"texts": texts, "model": model, "dtype": dtype, "batch_size": batch_size}
    ).encode()
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        request = urllib.request.Request(
            f"{url.rstrip('/')}/embed",
            data=body,
            headers={"Content-Type": "application/json", **_headers(token)},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                rows, dim = (int(n) for n in response.headers["X-Embedding-Shape"].split(","))
                data = response.read()
            return np.frombuffer(data, dtype="<f4").reshape(rows, dim).astype(np.float32)
        except urllib.error.HTTPError as exc:
            if exc.code == 503 and time.monotonic() + delay < deadline:
                time.sleep(delay)  # busy: wait for its turn
                delay = min(delay * 2, 5.0)
                continue
            raise EmbeddingServerError(
                f"embedding server at {url} refused ({exc.code}): {exc.read()[:300]!r}"
            ) from exc
        except OSError as exc:
            raise EmbeddingServerError(f"embedding server at {url} unreachable: {exc}") from exc
