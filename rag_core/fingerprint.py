"""The index fingerprint: everything that determines a page's chunks and vectors.

Two vectors are comparable only if the same model weights, dtype and chunking made them.
Every stored vector and every ingested file version carries the fingerprint of the settings
that produced it; a changed fingerprint makes reconciliation (rag_core.reconcile) re-process
every page from its item file, search ranks only vectors of the current fingerprint, and an
asset check fails while two fingerprints are mixed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag_core.embedders.base import Embedder

# Bump when rag_core/extraction.py or rag_core/chunking.py change their output for the same
# input: stored pages are then re-processed, like after a settings change.
EXTRACTOR_VERSION = 1
CHUNKER_VERSION = 1
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".onnx")


# (folder, stamp) -> digest, for the life of the process (the sensor asks every tick).
_DIGESTS: dict[tuple, str] = {}


def _hash_weights(folder: str) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and (path.suffix in WEIGHT_SUFFIXES or path.name == "config.json"):
            digest.update(str(path.relative_to(folder)).encode())
            with open(path, "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def weights_digest(folder: str, cache_file: str | Path | None = None) -> str:
    """SHA-256 of the model's weight files, cached while their sizes and mtimes stay: in this
    process, and in ``cache_file`` (JSON, by folder) for the next short-lived command."""
    stamp = tuple(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file() and (p.suffix in WEIGHT_SUFFIXES or p.name == "config.json")
    )
    if (folder, stamp) in _DIGESTS:
        return _DIGESTS[(folder, stamp)]
    key = json.dumps([folder, stamp])
    cached = _read_digests(Path(cache_file)) if cache_file else {}
    digest = cached.get(key) or _hash_weights(folder)
    if cache_file and key not in cached:
        _write_digests(Path(cache_file), {**cached, key: digest})
    _DIGESTS[(folder, stamp)] = digest
    return digest


def _read_digests(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: hash again (the cache is only a shortcut)
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _write_digests(path: Path, digests: dict[str, str]) -> None:
    # Keep the newest few (a changed stamp leaves its old entry behind); atomic rename, so a
    # reader never sees half a file; a folder that cannot be written (or does not exist yet:
    # a read-only command creates no data folder) only costs the shortcut.
    kept = dict(list(digests.items())[-8:])
    try:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(kept))
        os.replace(tmp, path)
    except OSError:
        pass


def index_fingerprint(
    embedder: Embedder,
    chunk_size_tokens: int,
    chunk_overlap_tokens: int,
    chunk_context_header: bool = False,
    chunk_min_tokens: int = 56,
) -> str:
    """A short id of (the embedder's identity incl. weights, dtype, chunking, extractor and
    chunker versions)."""
    parts = {
        # model, weights and, for any provider but sentence-transformers, the provider: a fake
        # index is never ranked with a real one (rag_core.embedders.base.Embedder.identity).
        **embedder.identity(),
        "dtype": embedder.dtype,
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
    from rag_core.embedders import embedder_from_settings

    return index_fingerprint(
        embedder_from_settings(settings, server_url="", token=""),
        settings.chunk_size_tokens,
        settings.chunk_overlap_tokens,
        settings.chunk_context_header,
        settings.chunk_min_tokens,
    )
