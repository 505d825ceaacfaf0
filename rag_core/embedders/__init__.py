"""Embedders: the interface (base.Embedder) and its implementations, chosen by the settings.

- ``sentence-transformers`` (default): the local model (sentence_transformers.py);
- ``fake``: deterministic hash-based vectors, no torch, for tests and development only;
- either one behind the warm embedding server's client (server_client.py) when a server URL
  is known (EMBEDDING_SERVER_URL, or the one a running session announced for searches).
"""

from __future__ import annotations

from pathlib import Path

from rag_core.embedders.base import Embedder, EmbedderError
from rag_core.embedders.fake import FakeEmbedder
from rag_core.embedders.sentence_transformers import DEFAULT_MODEL, SentenceTransformersEmbedder
from rag_core.embedders.server_client import ServerClientEmbedder

PROVIDERS = ("sentence-transformers", "fake")
QUERY_DTYPE = "float32"  # the precision of questions (create_embedder ``for_queries``)
# Where the model weights' SHA-256 is remembered between processes (keyed by path, sizes and
# mtimes): hashing the 90 MB of MiniLM costs every `rag search` ~0.1 s otherwise.
DIGEST_CACHE = "model-digests.json"

__all__ = [
    "DEFAULT_MODEL",
    "PROVIDERS",
    "Embedder",
    "EmbedderError",
    "FakeEmbedder",
    "SentenceTransformersEmbedder",
    "ServerClientEmbedder",
    "create_embedder",
    "embedder_from_settings",
]


def create_embedder(
    provider: str = "sentence-transformers",
    model: str = DEFAULT_MODEL,
    dtype: str = "auto",
    threads: int = 0,
    batch_size: int = 64,
    slowdown_ms: int = 0,
    server_url: str = "",
    token: str = "",
    for_queries: bool = False,
    digest_cache: str | Path | None = None,
) -> Embedder:
    """The embedder of ``provider``, behind the warm server's client when ``server_url`` is set.

    ``for_queries``: a few short questions (search), not batches of chunks: the local model
    takes its fastest start-up path, and a server that fails once is not asked again.
    """
    local: Embedder
    if for_queries:
        # Questions are embedded in float32 whatever the index's dtype (EMBEDDING_DTYPE=auto is
        # bfloat16 on CPUs with native BF16): the same retrieval quality as bf16 questions
        # (README, Retrieval quality), the numpy encoder keeps `rag search` free of torch, and
        # a question's vector does not depend on whether a session's warm server is running.
        dtype = QUERY_DTYPE
    if provider == "fake":
        local = FakeEmbedder(batch_size=batch_size, slowdown_ms=slowdown_ms)
    elif provider == "sentence-transformers":
        local = SentenceTransformersEmbedder(
            model, dtype, threads, batch_size, slowdown_ms, for_queries, digest_cache
        )
    else:
        raise EmbedderError(
            f"EMBEDDING_PROVIDER={provider!r} is not valid: EMBEDDING_PROVIDER accepts "
            + " or ".join(PROVIDERS)
        )
    if not server_url:
        return local
    return ServerClientEmbedder(
        server_url,
        token,
        local,
        timeout=60.0 if for_queries else 600.0,
        keep_trying=not for_queries,
    )


def embedder_from_settings(
    settings, server_url: str | None = None, token: str | None = None, for_queries: bool = False
) -> Embedder:
    """The embedder validated ``settings`` describe; ``server_url``/``token`` override
    EMBEDDING_SERVER_URL and the token from the environment (read here, never stored)."""
    from rag_core.settings import TOKEN_ENV, secret

    return create_embedder(
        settings.embedding_provider,
        settings.embedding_model,
        settings.embedding_dtype,
        settings.torch_num_threads,
        settings.embedding_batch_size,
        settings.embedding_slowdown_ms,
        settings.embedding_server_url if server_url is None else server_url,
        secret(TOKEN_ENV) if token is None else token,
        for_queries,
        Path(settings.data_dir) / DIGEST_CACHE,
    )
