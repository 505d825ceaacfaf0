"""The client of the warm embedding server (``rag_app/embedding_server.py``).

Dagster-free and torch-free: the ingestion resource and ``rag search`` call the server of a
running session through these functions; the server itself is part of the application.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import numpy as np


class EmbeddingServerError(RuntimeError):
    """The server could not be reached or refused the request."""


# Limits. A chunk is ~224 tokens (~1-2 KB); the client splits larger inputs to fit.
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_TEXTS = 256


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
