"""Embedding resource: hands out the Embedder that EMBEDDING_PROVIDER selects (rag_core.embedders),
behind the warm embedding server's client when ``server_url`` is set."""

from __future__ import annotations

import dagster as dg

from rag_core.embedders import DEFAULT_MODEL, Embedder, create_embedder
from rag_core.settings import TOKEN_ENV, default, secret


class EmbedderResource(dg.ConfigurableResource):
    """The embedding model of the assets and checks: ``provider`` picks the implementation
    (sentence-transformers or fake), ``server_url`` a warm server to use when it answers."""

    provider: str = default("EMBEDDING_PROVIDER")
    model: str = DEFAULT_MODEL
    dtype: str = default("EMBEDDING_DTYPE")
    batch_size: int = default("EMBEDDING_BATCH_SIZE")  # type: ignore[assignment]
    torch_threads: int = default("TORCH_NUM_THREADS")
    server_url: str = ""
    # EMBEDDING_SLOWDOWN_MS: tests and demos make ingestion slower than the crawl on purpose.
    slowdown_ms: int = default("EMBEDDING_SLOWDOWN_MS")

    @classmethod
    def from_settings(cls, settings) -> EmbedderResource:
        """The embedder the settings describe (assets, checks and tests share it)."""
        return cls(
            provider=settings.embedding_provider,
            model=settings.embedding_model,
            dtype=settings.embedding_dtype,
            batch_size=settings.embedding_batch_size,
            torch_threads=settings.torch_num_threads,
            server_url=settings.embedding_server_url,
            slowdown_ms=settings.embedding_slowdown_ms,
        )

    def get_embedder(self) -> Embedder:
        """The configured Embedder (cheap: a local model loads on its first encode, once per
        process)."""
        return create_embedder(
            self.provider,
            self.model,
            self.dtype,
            self.torch_threads,
            self.batch_size,
            self.slowdown_ms,
            self.server_url,
            # Read when used, from the run's environment: a token in the resource's config
            # would be shown in the Dagster UI.
            secret(TOKEN_ENV) if self.server_url else "",
        )
