"""The store interface: every read and write the platform makes on its tables.

Assets, checks, sensors, search, status, metrics and serve call these methods and never
write SQL; an implementation (DuckDB today, a multi-writer one for scale-out) holds all of
it. Rows go in and come out as tuples in the column order of ``TABLE_COLUMNS``, the one
declaration of each table's columns.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

# One declaration of each table's columns (name, DuckDB type). Staging tables reuse the
# documents and chunks columns; the embeddings table adds its vector column, whose type
# depends on the implementation (a fixed-width array, or a list where arrays are missing).
TABLE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "raw_items": (
        ("item_id", "VARCHAR PRIMARY KEY"),
        ("url", "VARCHAR NOT NULL"),
        ("requested_url", "VARCHAR"),
        ("status", "INTEGER"),
        ("content_type", "VARCHAR"),
        ("title", "VARCHAR"),
        ("fetched_at", "VARCHAR"),
        ("html_chars", "BIGINT"),
        ("truncated", "BOOLEAN"),
        ("links", "VARCHAR[]"),
        ("file_path", "VARCHAR"),
    ),
    "documents": (
        ("item_id", "VARCHAR PRIMARY KEY"),
        ("url", "VARCHAR NOT NULL"),
        ("title", "VARCHAR"),
        ("text", "VARCHAR NOT NULL"),
        ("content_hash", "VARCHAR NOT NULL"),
        ("word_count", "INTEGER"),
        ("headings", "VARCHAR[]"),
        ("fetched_at", "VARCHAR"),
    ),
    "chunks": (
        ("chunk_id", "VARCHAR PRIMARY KEY"),
        ("item_id", "VARCHAR NOT NULL"),
        ("chunk_index", "INTEGER NOT NULL"),
        ("heading", "VARCHAR"),
        ("text", "VARCHAR NOT NULL"),
        ("token_count", "INTEGER NOT NULL"),
        ("content_hash", "VARCHAR NOT NULL"),
    ),
    # The vector column (``embedding``) is appended with the implementation's vector type.
    "embeddings": (
        ("chunk_id", "VARCHAR PRIMARY KEY"),
        ("item_id", "VARCHAR NOT NULL"),
        ("model", "VARCHAR NOT NULL"),
        ("fingerprint", "VARCHAR"),
    ),
    "ingest_errors": (
        ("item_id", "VARCHAR NOT NULL"),
        ("stage", "VARCHAR NOT NULL"),
        ("error", "VARCHAR NOT NULL"),
        ("run_id", "VARCHAR"),
        ("occurred_at", "TIMESTAMPTZ DEFAULT current_timestamp"),
    ),
    "ingested_files": (
        ("item_id", "VARCHAR PRIMARY KEY"),
        ("mtime_ns", "BIGINT NOT NULL"),
        ("state", "VARCHAR NOT NULL"),
        ("fingerprint", "VARCHAR"),
    ),
}
# Staged versions of a page (built aside, swapped in whole by ``publish``): same columns.
STAGED = {"staged_documents": "documents", "staged_chunks": "chunks"}


def columns(table: str) -> tuple[str, ...]:
    """Column names of ``table`` in declaration order (a staging table has its source's)."""
    names = tuple(name for name, _ in TABLE_COLUMNS[STAGED.get(table, table)])
    return (*names, "embedding") if table == "embeddings" else names


RAW_COLUMNS = columns("raw_items")
DOC_COLUMNS = columns("documents")
CHUNK_COLUMNS = columns("chunks")
# (chunk_id, item_id, model, fingerprint, embedding): the rows ``publish`` takes.
VECTOR_COLUMNS = columns("embeddings")
ITEM_TABLES = ("raw_items", "documents", "chunks", "embeddings")
STAGING_TABLES = tuple(STAGED)

# A search candidate: (chunk_id, item_id, title, url, heading, text, content_hash,
# chunk_index, score).
Candidate = tuple


class StoreLockedError(RuntimeError):
    """The store stayed locked by another process for longer than the timeout."""


class Store(ABC):
    """What the platform asks of its store. Each call is one short transaction (writes) or
    one consistent read; ``session()`` groups several reads on one open connection."""

    @abstractmethod
    def exists(self) -> bool:
        """Whether the store holds anything yet (reads of a missing store return nothing)."""

    @contextlib.contextmanager
    def session(self, read_only: bool = True) -> Iterator[Store]:
        """A store whose calls share one connection (cheaper for many small reads)."""
        yield self

    # -- ingestion writes -------------------------------------------------------------------
    @abstractmethod
    def mark_files_started(self, mtimes: dict[str, int]) -> None:
        """Record the item file versions (item_id -> mtime_ns) a run is about to ingest."""

    @abstractmethod
    def store_raw_items(
        self, batch: Sequence[str], rows: Sequence[tuple], errors: dict[str, str], run_id: str
    ) -> None:
        """Replace the raw_items rows of the items in ``rows`` and the stage's errors of
        ``batch``, in one transaction; failed items keep their last good rows."""

    @abstractmethod
    def stage_documents(
        self, batch: Sequence[str], rows: Sequence[tuple], errors: dict[str, str], run_id: str
    ) -> None:
        """Replace the staged documents and the stage's errors of every item of ``batch``."""

    @abstractmethod
    def stage_chunks(
        self, batch: Sequence[str], rows: Sequence[tuple], errors: dict[str, str], run_id: str
    ) -> None:
        """Replace the staged chunks and the stage's errors of every item of ``batch``."""

    @abstractmethod
    def publish(
        self, item_ids: Sequence[str], vector_rows: Sequence[tuple], dim: int | None = None
    ) -> None:
        """In one transaction, make the staged document and chunks of ``item_ids`` with these
        vectors (VECTOR_COLUMNS rows) the published ones, and clear them from staging."""

    @abstractmethod
    def set_files_state(self, item_ids: Sequence[str], state: str, fingerprint: str) -> None:
        """Mark the started file versions of ``item_ids`` "stored" or "error"."""

    @abstractmethod
    def record_errors(
        self, stage: str, item_ids: Sequence[str], errors: dict[str, str], run_id: str
    ) -> None:
        """Set the stage's error rows of ``item_ids``: clear the fixed ones, store the new."""

    @abstractmethod
    def record_given_up(self, failures: dict[str, int], message: str, fingerprint: str) -> None:
        """Items that failed every attempt (item_id -> mtime_ns): an "ingest" error each, and
        their file version marked "error" so it is not asked for again until it changes."""

    @abstractmethod
    def delete_items(self, item_ids: Sequence[str]) -> None:
        """Remove the items from every table (published, staged, files, errors) at once."""

    @abstractmethod
    def load_index(
        self,
        documents: Sequence[tuple],
        chunks: Sequence[tuple],
        vector_rows: Sequence[tuple],
        dim: int,
    ) -> float:
        """Bulk-load a fresh store (evaluation, benches) and build its keyword index;
        returns the seconds the keyword index took."""

    # -- ingestion reads --------------------------------------------------------------------
    @abstractmethod
    def raw_item_ids(self, item_ids: Sequence[str]) -> set[str]:
        """Those of ``item_ids`` with a raw_items row."""

    @abstractmethod
    def staged_documents(self, item_ids: Sequence[str]) -> list[tuple]:
        """(item_id, title, text, content_hash) of the staged documents of ``item_ids``."""

    @abstractmethod
    def staged_chunks(self, item_ids: Sequence[str]) -> list[tuple]:
        """(chunk_id, item_id, text) of the staged chunks, by item then chunk index."""

    @abstractmethod
    def vectors(self, chunk_ids: Sequence[str], fingerprint: str) -> dict[str, list[float]]:
        """Stored vectors of ``chunk_ids`` made under index ``fingerprint`` (for reuse)."""

    @abstractmethod
    def item_summaries(self, item_ids: Sequence[str]) -> list[tuple]:
        """(item_id, title, url, word_count, chunks, vectors, first chunk text) per published
        document of ``item_ids``."""

    @abstractmethod
    def item_errors(self, item_ids: Sequence[str]) -> list[tuple]:
        """(item_id, stage, error) recorded for ``item_ids``."""

    @abstractmethod
    def urls(self, item_ids: Sequence[str]) -> dict[str, str]:
        """item_id -> URL from raw_items."""

    @abstractmethod
    def graph_rows(self, item_ids: Sequence[str]) -> tuple[list[tuple], list[tuple]]:
        """For the graph sink: (item_id, url, title, content_hash, links) per document, and
        (item_id, chunk_id, chunk_index, text, vector or None) per chunk in reading order."""

    @abstractmethod
    def ingested_files(self) -> dict[str, tuple[int, str, str]]:
        """item_id -> (mtime_ns, state, fingerprint) of every ingested file version."""

    # -- figures: status, metrics, checks ---------------------------------------------------
    @abstractmethod
    def table_counts(self) -> dict[str, int]:
        """Rows of each item table and of ingest_errors (0 where absent)."""

    @abstractmethod
    def recent_errors(self, limit: int = 200) -> list[tuple]:
        """(item_id, stage, url, error, run_id, occurred_at), newest first."""

    @abstractmethod
    def metric_counts(self, model: str) -> dict:
        """{"items", "rows", "errors", "items_with_model"} figures for the metrics endpoint."""

    @abstractmethod
    def fingerprint_counts(self) -> dict[str, int]:
        """Pages with vectors per index fingerprint ('' for vectors stored before them)."""

    @abstractmethod
    def example_title(self) -> str | None:
        """A page title to suggest as a first search (the longest document's)."""

    @abstractmethod
    def has_embeddings(self) -> bool:
        """Whether any vector can be stored yet (the embeddings table exists)."""

    @abstractmethod
    def embedding_coverage(self) -> tuple[int, int, int, list[str]]:
        """(chunks without a vector, vectors without a chunk, duplicate vectors, up to 10
        items missing vectors)."""

    @abstractmethod
    def vector_widths(self) -> list[tuple[int, str, int]]:
        """(width, model, vectors) for each width and model stored."""

    @abstractmethod
    def non_finite_vectors(self) -> int:
        """Vectors holding NaN or infinity."""

    # -- search -----------------------------------------------------------------------------
    @abstractmethod
    def embeddings_dimension(self) -> int | None:
        """Width of the stored vectors, or None when there are none."""

    @abstractmethod
    def vector_candidates(
        self,
        query: Sequence[float],
        fingerprint: str,
        limit: int,
        url_prefix: str = "",
        title: str = "",
    ) -> list[Candidate]:
        """Top ``limit`` chunks of index ``fingerprint`` by cosine similarity to ``query``."""

    @abstractmethod
    def keyword_candidates(
        self, question: str, fingerprint: str, limit: int, url_prefix: str = "", title: str = ""
    ) -> list[Candidate]:
        """Top ``limit`` chunks with a vector of ``fingerprint`` by BM25 for ``question``
        (empty when there is no keyword index)."""

    @abstractmethod
    def keyword_index_current(self) -> bool:
        """Whether the keyword index exists and covers the chunks as they are now."""

    @abstractmethod
    def keyword_index_age_s(self) -> float | None:
        """Seconds since the keyword index was built, or None when it never was."""

    @abstractmethod
    def rebuild_keyword_index(self) -> float:
        """(Re)build the keyword index; returns the seconds it took."""
