"""The index fingerprint: everything that determines a page's chunks and vectors.

Two vectors are comparable only if the same model weights, dtype and chunking made them.
Every stored vector and every ingested file version carries the fingerprint of the settings
that produced it; a changed fingerprint makes reconciliation (rag_core.reconcile) re-process
every page from its item file, search ranks only vectors of the current fingerprint, and an
asset check fails while two fingerprints are mixed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

# Bump when rag_core/extraction.py or rag_core/chunking.py change their output for the same
# input: stored pages are then re-processed, like after a settings change.
EXTRACTOR_VERSION = 1
CHUNKER_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")


@functools.lru_cache(maxsize=8)
def _weights_digest(folder: str, stamp: tuple) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and (path.suffix in WEIGHT_SUFFIXES or path.name == "config.json"):
            digest.update(str(path.relative_to(folder)).encode())
            with open(path, "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def weights_digest(folder: str) -> str:
    """SHA-256 of the model's weight files (cached while their sizes and mtimes stay)."""
    stamp = tuple(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name == "config.json")
    )
    return _weights_digest(folder, stamp)


def index_fingerprint(
    model: str,
    dtype: str,
    chunk_size_tokens: int,
    chunk_overlap_tokens: int,
    chunk_context_header: bool = False,
    chunk_min_tokens: int = 56,
) -> str:
    """A short id of (model identity incl. weights, dtype, chunking, extractor/chunker)."""
    from rag_core.embedding import resolve_model

    info = resolve_model(model)
    parts = {
        "model": info.name,
        "weights": weights_digest(info.path),
        "dtype": dtype,
        "chunk_size_tokens": chunk_size_tokens,
        "chunk_overlap_tokens": chunk_overlap_tokens,
        "chunk_context_header": chunk_context_header,
        "chunk_min_tokens": chunk_min_tokens,
        "extractor": EXTRACTOR_VERSION,
        "chunker": CHUNKER_VERSION,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def settings_fingerprint(settings) -> str:
    """The fingerprint of validated Settings."""
    return index_fingerprint(
        settings.embedding_model,
        settings.embedding_dtype,
        settings.chunk_size_tokens,
        settings.chunk_overlap_tokens,
        settings.chunk_context_header,
        settings.chunk_min_tokens,
    )
