"""The embedder ``rag search`` uses for its one question: the cheapest that gives the same vector.

1. A warm embedding server of the same model and dtype (``EMBEDDING_SERVER_URL``, or the one a
   running ``rag run`` / ``rag dev`` announced in ``<DATA_DIR>/embedding-server.json``): one
   HTTP request, no torch in this process.
2. Otherwise the model is loaded here, by the shortest path (see ``_load_local``).

Both give the vectors the ingestion stored (same model, dtype and ``embedding.encode``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rag_core import embedding

if TYPE_CHECKING:
    import numpy as np

    from rag_core.settings import Settings

log = logging.getLogger(__name__)


class QueryEmbedder:
    """Embeds questions: through a warm server when one is given, else with a local model."""

    def __init__(self, model: str, dtype: str, threads: int = 0, server_url: str = "",
                 token: str = ""):  # fmt: skip
        self.model = model
        self.dtype = dtype
        self.threads = threads
        self.server_url = server_url
        self.token = token
        self._local: Any = None

    @property
    def info(self) -> embedding.ModelInfo:
        """Name, path and dimension of the model, read from its folder (no torch)."""
        return embedding.resolve_model(self.model)

    @property
    def source(self) -> str:
        """Where the next vector will be computed."""
        return f"server {self.server_url}" if self.server_url else "in-process"

    def embed(self, texts: list[str]) -> tuple[np.ndarray, str]:
        """Normalised float32 vectors for ``texts`` and where they were computed."""
        if self.server_url:
            from rag_core.embedding_server import EmbeddingServerError, remote_encode

            try:
                vectors = remote_encode(
                    self.server_url, texts, self.info.name, self.dtype, batch_size=32, timeout=60
                )
                return vectors, self.source
            except EmbeddingServerError as exc:
                # The server went away between discovery and use: answer anyway, slower.
                log.warning("%s; loading the model in this process instead", exc)
                self.server_url = ""
        if self._local is None:
            self._local = embedding.load_model(self.model, self.dtype, self.threads)
        return embedding.encode(self._local, texts, batch_size=32), self.source


def query_embedder(settings: Settings) -> QueryEmbedder:
    """The embedder for ``settings``: a live warm server of the same model and dtype if any."""
    from rag_core.server_state import live_server, state_path

    url, token = settings.embedding_server_url, ""
    if not url:
        name = embedding.resolve_model(settings.embedding_model).name
        state = live_server(state_path(settings.data_dir), name, settings.embedding_dtype)
        if state is not None:
            url, token = state.url, state.token
    return QueryEmbedder(
        settings.embedding_model,
        settings.embedding_dtype,
        settings.torch_num_threads,
        server_url=url,
        token=token,
    )
