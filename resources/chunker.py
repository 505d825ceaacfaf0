"""Chunking resource: heading-aware chunks measured in the embedding model's own tokenizer."""

from __future__ import annotations

import dagster as dg

from rag_core.chunking import Chunk, TokenCounter, chunk_document, max_chunk_tokens
from rag_core.settings import default
from resources.embedder import EmbedderResource


class TokenChunker(dg.ConfigurableResource):
    """Splits documents into chunks that never exceed the model's max_seq_length, counting
    tokens with the embedder's tokenizer."""

    embedder: EmbedderResource
    chunk_size_tokens: int = default("CHUNK_SIZE_TOKENS")
    chunk_overlap_tokens: int = default("CHUNK_OVERLAP_TOKENS")
    context_header: bool = default("CHUNK_CONTEXT_HEADER")
    min_tokens: int = default("CHUNK_MIN_TOKENS")

    @property
    def tokenizer(self) -> TokenCounter:
        return self.embedder.get_embedder().tokenizer

    @property
    def max_tokens(self) -> int:
        """The chunk size actually used: the setting, capped by what the model can read."""
        return max_chunk_tokens(self.tokenizer, self.chunk_size_tokens)

    def chunk(self, text: str, title: str = "") -> list[Chunk]:
        """Chunks of ``text`` in reading order."""
        tokenizer = self.tokenizer
        return chunk_document(
            text,
            tokenizer,
            max_chunk_tokens(tokenizer, self.chunk_size_tokens),
            self.chunk_overlap_tokens,
            title,
            context_header=self.context_header,
            min_tokens=self.min_tokens,
        )
