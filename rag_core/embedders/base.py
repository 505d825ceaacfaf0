"""The embedder interface: what ingestion, checks, search, the embedding server and the chunker
need from an embedding model, whichever provider computes the vectors.

An implementation is cheap to construct (nothing is loaded until the first ``encode`` or
``warm``): every Dagster process builds one from the settings, and most never encode.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import numpy as np

    from rag_core.chunking import TokenCounter


class EmbedderError(RuntimeError):
    """An embedder cannot be built or used; the message names the setting to change."""


class Embedder(ABC):
    """Turns texts into normalised float32 vectors, and tells the chunker how it counts tokens.

    Contract (tests/test_embedders.py runs it on every implementation available):
    ``encode`` returns one row per text, in order, of ``dimension`` float32 values with unit
    L2 norm, the same row for the same text whatever else is in the batch (up to float32
    rounding of batched matrix products); ``tokenizer`` counts what the model reads, and
    ``tokenizer.max_seq_length`` is the most it reads; ``identity`` changes whenever the
    vectors could.
    """

    provider: ClassVar[str]  # the EMBEDDING_PROVIDER value that selects the implementation
    dtype: str = "float32"  # the precision the model computes in (stored vectors are float32)
    batch_size: int = 64
    # For tests and demos (EMBEDDING_SLOWDOWN_MS): milliseconds added per embedded text.
    slowdown_ms: int = 0
    where: str = "in-process"  # what ``embed`` reports as the place the vectors came from

    @property
    @abstractmethod
    def name(self) -> str:
        """The model's name as stored in ``embeddings.model``."""

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Width of the vectors (read from the model's files where possible, without loading)."""

    @property
    @abstractmethod
    def tokenizer(self) -> TokenCounter:
        """The tokenizer the chunker measures chunks in: the model's own."""

    @abstractmethod
    def identity(self) -> dict[str, str]:
        """What makes two of its vectors comparable (model name, weights...), for the index
        fingerprint (rag_core.fingerprint). Every provider except sentence-transformers names
        itself here: sentence-transformers fingerprints were made before providers existed and
        stay the same, so an existing index is not re-embedded."""

    @abstractmethod
    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Normalised float32 vectors of ``texts``, shape (len(texts), dimension)."""

    def warm(self) -> None:  # noqa: B027 - optional hook: most implementations load nothing
        """Load the model now, so the first ``encode`` is not slow (the warm server calls it)."""

    def embed(self, texts: list[str]) -> tuple[np.ndarray, str]:
        """``encode(texts)`` and where the vectors were computed (shown in run metadata)."""
        if self.slowdown_ms:
            time.sleep(self.slowdown_ms * len(texts) / 1000)
        return self._embed(texts)

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, str]:
        return self.encode(texts), self.where

    def describe(self) -> dict[str, str | int]:
        """What the embeddings asset records about the vectors (run metadata)."""
        return {"provider": self.provider, "model": self.name, "dtype": self.dtype}
