"""Chunking resource: heading-aware chunks measured in the embedding model's own tokenizer."""

from __future__ import annotations

from functools import lru_cache

import dagster as dg

from rag_core import embedding
from rag_core.chunking import Chunk, ModelTokenizer, chunk_document, max_chunk_tokens


@lru_cache(maxsize=4)
def _tokenizer(model_path: str) -> ModelTokenizer:
    return ModelTokenizer.from_model_dir(model_path)


class TokenChunker(dg.ConfigurableResource):
    """Splits documents into chunks that never exceed the model's max_seq_length."""

    model: str = embedding.DEFAULT_MODEL
    chunk_size_tokens: int = 224
    chunk_overlap_tokens: int = 32
    context_header: bool = False
    min_tokens: int = 56

    @property
    def tokenizer(self) -> ModelTokenizer:
        return _tokenizer(embedding.resolve_model(self.model).path)

    @property
    def max_tokens(self) -> int:
        """The chunk size actually used: the setting, capped by what the model can read."""
        return max_chunk_tokens(self.tokenizer, self.chunk_size_tokens)

    def chunk(self, text: str, title: str = "") -> list[Chunk]:
        """Chunks of ``text`` in reading order."""
        return chunk_document(
            text,
            self.tokenizer,
            self.max_tokens,
            self.chunk_overlap_tokens,
            title,
            context_header=self.context_header,
            min_tokens=self.min_tokens,
        )
