"""An in-process copy of one index's vectors, for exact top-k vector search in numpy.

Why: a search opens the store file anew (a reader holding it would lock ingestion out), so
DuckDB reads and scores every vector again each time: 100k vectors took 0.1 s idle and
0.4-0.6 s on the shared 2-core machine, 1M ten times that. A long-lived searcher (``rag
serve``, ``rag eval``, a bench) keeps the vectors here instead and pays one matrix-vector
product per search (docs/architecture.md, *Search*). The chunks' result rows (title, URL,
heading, text...) are held with the vectors, so the winners need no join either: reading
their rows meant scanning every chunk id of the freshly opened file.

Exactness: the product ranks approximately (BLAS sums in its own order, differing from DuckDB
by ~2e-7); every vector within ``MARGIN`` of the k-th best is then scored exactly as DuckDB's
``array_cosine_similarity`` does (float32, summed in index order: ``exact_cosine``, compared
bit for bit in tests/test_vector_cache.py), and ordered like the SQL (score descending, then
chunk id). The result is the SQL ranking's, ties included.

Freshness: the copy belongs to one store file, one index fingerprint and one ``signature``
(the vectors' count and checksum of chunk and row ids, read in the search's own connection).
A search whose signature differs does not use it. The rows may be held too because a page's
document and chunks change only together with its vectors (published or deleted as one), and
a replaced vector row changes the signature. The copy is (re)built only when a search
finds the same signature as the previous search of that process: a one-shot ``rag search``
never pays for a load, and while ingestion publishes batch after batch searches rank in SQL
instead of reloading after every batch.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# Scores closer than this to the k-th best are re-scored exactly. BLAS and DuckDB differ by
# ~2e-7 on cosines of 384-d vectors; 1e-4 leaves a wide margin at the cost of a few more
# exact scores (a handful of vectors, even at 1M).
MARGIN = 1e-4
# Vectors held at most per copy (float32: 1.5 GB per million 384-d vectors, about as much
# again for their rows); a larger index is ranked in SQL.
MAX_VECTORS = 2_000_000
# Copies kept (one per store and fingerprint; a searcher serves one, tests open many).
MAX_COPIES = 2


def exact_cosine(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row with ``query`` computed as DuckDB's
    array_cosine_similarity does for FLOAT arrays: float32 accumulators summed in index order,
    ``dot / sqrt(norm_l * norm_r)``, clamped to [-1, 1]."""
    rows = np.asarray(rows, dtype=np.float32)
    dot = np.zeros(len(rows), dtype=np.float32)
    norm_l = np.zeros(len(rows), dtype=np.float32)
    norm_r = np.float32(0)
    for i in range(rows.shape[1]):  # one step per component: the order of the sums matters
        x, y = rows[:, i], query[i]
        dot += x * y
        norm_l += x * x
        norm_r = np.float32(norm_r + y * y)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = dot / np.sqrt(norm_l * norm_r)
    return np.clip(score, np.float32(-1), np.float32(1))


@dataclass(frozen=True)
class Snapshot:
    """The vectors of one (store, fingerprint) as of ``signature``."""

    signature: tuple
    ids: np.ndarray  # chunk ids (str objects), one per row of ``matrix``
    matrix: np.ndarray  # (n, dim) float32
    norms: np.ndarray  # (n,) float32, every one finite and non-zero
    # chunk_id -> (chunk_id, item_id, title, url, heading, text, content_hash, chunk_index)
    # for the chunks with a chunk and a document row (as the SQL's joins keep them).
    rows: dict[str, tuple]

    @classmethod
    def build(
        cls, signature: tuple, ids: Sequence[str], matrix: np.ndarray, rows: dict[str, tuple]
    ) -> Snapshot | None:
        """A snapshot, or None for vectors the exact path does not cover (non-finite or zero
        components, where DuckDB's NaN ordering would have to be copied too)."""
        if len(ids) == 0 or not np.isfinite(matrix).all():
            return None
        norms = np.linalg.norm(matrix, axis=1).astype(np.float32)
        if not np.isfinite(norms).all() or not (norms > 0).all():
            return None
        return cls(signature, np.asarray(ids, dtype=object), matrix, norms, rows)

    def candidates(self, scored: Sequence[tuple[str, float]]) -> list[tuple]:
        """Candidate rows (the row and its score) of ``scored`` (chunk_id, score) pairs, in
        their order; ids without a vector here, a chunk or a document are dropped."""
        return [(*self.rows[cid], score) for cid, score in scored if cid in self.rows]

    def top(self, query: np.ndarray, limit: int) -> list[tuple[str, float]] | None:
        """The ``limit`` best (chunk_id, score) by cosine with ``query`` (float32, as DuckDB
        casts it), as the SQL ranking orders them; None for a query the exact path does not
        cover (zero or non-finite)."""
        q_norm = float(np.linalg.norm(query))
        if not np.isfinite(query).all() or q_norm == 0:
            return None
        approx = (self.matrix @ query) / (self.norms * np.float32(q_norm))
        n = len(approx)
        if limit < n:
            kth = np.partition(approx, n - limit)[n - limit]
            near = np.flatnonzero(approx >= kth - MARGIN)
        else:
            near = np.arange(n)
        exact = exact_cosine(self.matrix[near], query)
        if not np.isfinite(exact).all():
            return None
        order = sorted(range(len(near)), key=lambda i: (-exact[i], self.ids[near[i]]))
        return [(self.ids[near[i]], float(exact[i])) for i in order[:limit]]


@dataclass
class _Entry:
    snapshot: Snapshot | None = None
    last_signature: tuple | None = None  # the signature the previous search saw
    loading: bool = False
    unusable: tuple | None = None  # a signature whose vectors the copy cannot hold


class VectorCache:
    """Snapshots by key (store path, fingerprint, dimension), shared by a process's threads."""

    def __init__(self, max_copies: int = MAX_COPIES, max_vectors: int = MAX_VECTORS) -> None:
        self.max_copies, self.max_vectors = max_copies, max_vectors
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def snapshot(
        self,
        key: tuple,
        signature: tuple,
        load: Callable[[], tuple[Sequence[str], np.ndarray, dict[str, tuple]]],
    ) -> Snapshot | None:
        """The snapshot of ``key`` at ``signature``: the held one if it matches, a new one
        (``load()``, in the caller's connection) if the previous search saw this signature
        too, else None (rank in SQL)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry()
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_copies:
                self._entries.popitem(last=False)
            if entry.snapshot is not None and entry.snapshot.signature == signature:
                return entry.snapshot
            settled = entry.last_signature == signature
            entry.last_signature = signature
            if not settled or entry.loading or signature[0] > self.max_vectors:
                return None
            if entry.unusable == signature:
                return None
            entry.loading, entry.snapshot = True, None  # other threads rank in SQL meanwhile
        snapshot = None
        try:
            snapshot = Snapshot.build(signature, *load())
        except ValueError:
            snapshot = None  # vectors the copy cannot hold (see load_vectors): SQL ranks
        finally:
            with self._lock:
                entry.loading = False
                entry.snapshot = snapshot
                entry.unusable = None if snapshot is not None else signature
        return snapshot

    def current(self, key: tuple, signature: tuple) -> Snapshot | None:
        """The held snapshot of ``key`` if it is at ``signature`` (never loads one)."""
        with self._lock:
            entry = self._entries.get(key)
        snapshot = entry.snapshot if entry is not None else None
        return snapshot if snapshot is not None and snapshot.signature == signature else None

    def holds(self, key: tuple) -> bool:
        """Whether a snapshot of ``key`` is held (at whatever signature)."""
        with self._lock:
            entry = self._entries.get(key)
            return entry is not None and entry.snapshot is not None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# The process's copies (searches in one process share them).
CACHE = VectorCache()
