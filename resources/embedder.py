"""Embedding resource: sentence-transformers, in-process or through the warm embedding server."""

from __future__ import annotations

import logging
import time
from typing import Any

import dagster as dg
import numpy as np

from rag_core import embedding
from rag_core.embedding_client import EmbeddingServerError, remote_encode
from rag_core.settings import TOKEN_ENV, default, secret

log = logging.getLogger(__name__)

# One loaded model per process and configuration: a run embeds all its items with it.
_LOADED: dict[tuple[str, str, int], Any] = {}


class SentenceTransformerEmbedder(dg.ConfigurableResource):
    """The embedding model; uses the warm server at ``server_url`` when one answers."""

    provider: str = "sentence-transformers"
    model: str = embedding.DEFAULT_MODEL
    dtype: str = "float32"
    batch_size: int = default("EMBEDDING_BATCH_SIZE")  # type: ignore[assignment]
    torch_threads: int = 0
    server_url: str = ""
    # EMBEDDING_SLOWDOWN_MS: tests and demos make ingestion slower than the crawl on purpose.
    slowdown_ms: int = 0

    @classmethod
    def from_settings(cls, settings) -> SentenceTransformerEmbedder:
        """The embedder the settings describe (assets, the search command and tests share it)."""
        return cls(
            provider=settings.embedding_provider,
            model=settings.embedding_model,
            dtype=settings.embedding_dtype,
            batch_size=settings.embedding_batch_size,
            torch_threads=settings.torch_num_threads,
            server_url=settings.embedding_server_url,
            slowdown_ms=settings.embedding_slowdown_ms,
        )

    @property
    def info(self) -> embedding.ModelInfo:
        """Path, max_seq_length and dimension, read from the model folder without torch."""
        return embedding.resolve_model(self.model)

    def _local_model(self) -> Any:
        key = (self.model, self.dtype, self.torch_threads)
        if key not in _LOADED:
            _LOADED[key] = embedding.load_model(self.model, self.dtype, self.torch_threads)
        return _LOADED[key]

    def embed(self, texts: list[str]) -> tuple[np.ndarray, str]:
        """Normalised float32 vectors for ``texts`` and where they were computed."""
        if self.slowdown_ms:
            time.sleep(self.slowdown_ms * len(texts) / 1000)
        if self.server_url:
            try:
                vectors = remote_encode(
                    self.server_url,
                    texts,
                    self.info.name,
                    self.dtype,
                    self.batch_size,
                    # Read when used, from the run's environment: a token in the resource's
                    # config would be shown in the Dagster UI.
                    secret(TOKEN_ENV),
                )
                return vectors, f"server {self.server_url}"
            except EmbeddingServerError as exc:
                # The server is an accelerator, not a dependency: fall back to loading here.
                log.warning("%s; loading the model in this process instead", exc)
        vectors = embedding.encode(self._local_model(), texts, self.batch_size)
        return vectors, "in-process"
