"""The embedder ``rag search`` uses for its one question: the cheapest that gives the same vector.

1. A warm embedding server of the same model and dtype (``EMBEDDING_SERVER_URL``, or the one a
   running ``rag run`` / ``rag dev`` announced in ``<DATA_DIR>/embedding-server.json``): one
   HTTP request, no torch in this process.
2. Otherwise the model is loaded here, by the shortest path: a float32 BERT model with mean
   pooling (the default MiniLM) runs in numpy from its safetensors weights
   (``rag_core.numpy_encoder``: no torch, ~0.3 s); any other model or dtype loads with torch
   and sentence-transformers, as the ingestion does.

Both give the vectors the ingestion stored (same model, dtype and ``embedding.encode``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rag_core import embedding
from rag_core.settings import TOKEN_ENV, secret

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

    def embed(self, texts: list[str]) -> tuple[np.ndarray, str]:
        """Normalised float32 vectors for ``texts`` and where they were computed."""
        if self.server_url:
            from rag_core.embedding_client import EmbeddingServerError, remote_encode

            try:
                vectors = remote_encode(
                    self.server_url,
                    texts,
                    self.info.name,
                    self.dtype,
                    batch_size=32,
                    token=self.token,
                    timeout=60,
                )
                return vectors, f"server {self.server_url}"
            except EmbeddingServerError as exc:
                # The server went away between discovery and use: answer anyway, slower.
                log.warning("%s; loading the model in this process instead", exc)
                self.server_url = ""
        if self._local is None:
            self._local = self._load_local()
        return self._local(texts)

    def _load_local(self) -> Callable[[list[str]], tuple[np.ndarray, str]]:
        if self.dtype == "float32":
            from pathlib import Path

            from rag_core.numpy_encoder import NumpyBertEncoder, Unsupported

            info = self.info
            try:
                encoder = NumpyBertEncoder(Path(info.path), info.max_seq_length)
                return lambda texts: (encoder.encode(texts), "in-process (numpy)")
            except Unsupported as exc:
                log.info("%s; loading it with torch", exc)
        model = embedding.load_model(self.model, self.dtype, self.threads)
        return lambda texts: (embedding.encode(model, texts, 32), "in-process (torch)")


def query_embedder(settings: Settings) -> QueryEmbedder:
    """The embedder for ``settings``: a live warm server of the same model and dtype if any."""
    from rag_core.server_state import live_server, state_path

    # A server named in the settings takes the session's token from the environment; one
    # found through its state file (mode 0600, this user's only) carries its own.
    url, token = settings.embedding_server_url, secret(TOKEN_ENV)
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
