"""A deterministic embedder for tests and development: no model, no torch, microseconds a text.

EMBEDDING_PROVIDER=fake. Its vectors carry no meaning beyond shared words (each word has a
fixed pseudo-random direction, a text is the normalised sum of its words' directions), so
texts that share words are close, and the same text always gets the same vector. Never for
a real index: its fingerprint names the provider, so its vectors are never ranked with a
real model's.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache

import numpy as np

from rag_core.embedders.base import Embedder

FAKE_DIMENSION = 64
FAKE_MAX_SEQ_LENGTH = 256
# A word is a run of letters/digits, any other visible character a token of its own: close
# enough to a WordPiece tokenizer for the chunker, and additive over spans as it assumes.
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


class WordTokenizer:
    """Counts words and punctuation marks; the fake model 'reads' at most 256 of them."""

    max_seq_length = FAKE_MAX_SEQ_LENGTH
    special_tokens = 2  # as BERT's [CLS] and [SEP]: the chunk limit stays below max_seq_length

    def count(self, text: str) -> int:
        """Number of tokens in ``text``."""
        return sum(1 for _ in _TOKEN_RE.finditer(text))

    def offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of ``text``."""
        return [match.span() for match in _TOKEN_RE.finditer(text)]


@lru_cache(maxsize=65536)
def _word_vector(word: str, dimension: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(dimension).astype(np.float32)


class FakeEmbedder(Embedder):
    """Hash-based bag-of-words vectors: deterministic, fast, meaningless beyond shared words."""

    provider = "fake"

    def __init__(self, dimension: int = FAKE_DIMENSION, batch_size: int = 64, slowdown_ms: int = 0):
        self._dimension = int(dimension)
        self.batch_size = batch_size
        self.slowdown_ms = slowdown_ms
        self._tokenizer = WordTokenizer()

    @property
    def name(self) -> str:
        return f"fake-hash-{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def tokenizer(self) -> WordTokenizer:
        return self._tokenizer

    def identity(self) -> dict[str, str]:
        return {"provider": self.provider, "model": self.name}

    def encode(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        rows = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            # Truncated like a real model: words past max_seq_length do not count.
            words = [m.group().lower() for m in _TOKEN_RE.finditer(text)]
            for word in words[: FAKE_MAX_SEQ_LENGTH - 2] or [""]:
                rows[row] += _word_vector(word, self._dimension)
            rows[row] /= max(float(np.linalg.norm(rows[row])), 1e-12)
        return rows
