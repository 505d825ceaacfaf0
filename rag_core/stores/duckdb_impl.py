"""The Store on DuckDB: ``DuckDBStore`` (a file) and ``MemoryStore`` (in memory, for tests).

Each method opens a short connection (or uses its ``session``'s) and calls the SQL functions
of ``duckdb_store``; no SQL is written here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb

from rag_core.stores import duckdb_store as sql
from rag_core.stores import vector_cache
from rag_core.stores.base import Store


class DuckDBStore(Store):
    """The Store on one DuckDB file, opened briefly per call (or per ``session``) and
    retrying while another process holds it.

    A second implementation on DuckDB (a DuckLake catalog with many writers) subclasses it and
    overrides the points that differ: ``_open`` (how a connection is made and the catalog
    attached), ``exists``, ``vector_type`` and ``vector_score`` (the embeddings column and how
    search ranks it) and ``table_ddl`` (e.g. without key constraints); ``stores.register``
    then hands it to every caller of the store's path.
    """

    def __init__(self, path: Path | str, lock_timeout_s: float = 120.0) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self._con: duckdb.DuckDBPyConnection | None = None
        self._read_only = True

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    # -- overridable points -----------------------------------------------------------------
    def vector_type(self, dim: int) -> str:
        """The embeddings column's type for vectors of ``dim`` floats."""
        return sql.vector_type(dim)

    def vector_score(self, query: Sequence[float]) -> str:
        """SQL for the cosine similarity of the stored vector (``e.embedding``) and ``query``;
        a store of FLOAT[] lists overrides it (e.g. with list_cosine_similarity)."""
        return sql.array_score(query)

    def table_ddl(self, table: str, vector_type: str | None = None) -> str:
        """The create-if-missing statement of ``table`` (from its one declaration)."""
        return sql.table_ddl(table, vector_type)

    @contextlib.contextmanager
    def _open(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """A new connection to the store (waits out another process's lock)."""
        with sql.connect(self.path, read_only, self.lock_timeout_s) as con:
            yield con

    def exists(self) -> bool:
        return self.path.exists()

    @contextlib.contextmanager
    def raw_connection(self, read_only: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the store's database, for benches and tests that measure or inspect
        the database itself. Platform code calls the Store's methods instead."""
        with self._open(read_only) as con:
            yield con

    # -- connections ------------------------------------------------------------------------
    @contextlib.contextmanager
    def session(self, read_only: bool = True) -> Iterator[DuckDBStore]:
        if self._con is not None:
            yield self
            return
        bound = type(self).__new__(type(self))
        bound.__dict__.update(self.__dict__)
        bound.__dict__.pop("_signatures", None)  # a new connection: read its own
        with self._open(read_only) as con:
            bound._con, bound._read_only = con, read_only
            yield bound

    @contextlib.contextmanager
    def _reading(self) -> Iterator[duckdb.DuckDBPyConnection | None]:
        """A connection for one read; None when the store does not exist yet."""
        if self._con is not None:
            yield self._con
        elif not self.exists():
            yield None
        else:
            with self._open(True) as con:
                yield con

    @contextlib.contextmanager
    def _writing(self, dim: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction: everything inside commits together or not at all."""
        if self._con is not None and not self._read_only:
            self._ensure(self._con, dim)
            with sql.transaction(self._con):
                yield self._con
            return
        with self._open(False) as con:
            self._ensure(con, dim)
            with sql.transaction(con):
                yield con

    def _ensure(self, con: duckdb.DuckDBPyConnection, dim: int | None = None) -> None:
        sql.ensure_schema(con, dim, self.vector_type, self.table_ddl)

    def _read(self, function, *args, empty=None):
        """``function(con, *args)`` on a read connection; ``empty`` while there is no store."""
        with self._reading() as con:
            return empty if con is None else function(con, *args)

    # -- ingestion writes -------------------------------------------------------------------
    def mark_files_started(self, mtimes: dict[str, int]) -> None:
        with self._writing() as con:
            sql.mark_files_started(con, mtimes)

    def store_raw_items(self, batch, rows, errors, run_id) -> None:
        stored = [r[0] for r in rows]
        with self._writing() as con:
            sql.store_stage(con, "raw_items", "raw_items", batch, rows, stored, errors, run_id)

    def stage_documents(self, batch, rows, errors, run_id) -> None:
        # Every key's staged row is replaced, so a failed item leaves no stale one.
        with self._writing() as con:
            sql.store_stage(
                con, "documents", "staged_documents", batch, rows, batch, errors, run_id
            )

    def stage_chunks(self, batch, rows, errors, run_id) -> None:
        with self._writing() as con:
            sql.store_stage(con, "chunks", "staged_chunks", batch, rows, batch, errors, run_id)

    def publish(self, item_ids, vector_rows, dim=None) -> None:
        with self._writing(dim) as con:
            sql.publish_items(con, item_ids, vector_rows)

    def set_files_state(self, item_ids, state, fingerprint) -> None:
        with self._writing() as con:
            sql.set_files_state(con, item_ids, state, fingerprint)

    def record_errors(self, stage, item_ids, errors, run_id) -> None:
        with self._writing() as con:
            sql.replace_errors(con, stage, item_ids, errors, run_id)

    def record_given_up(self, failures, message, fingerprint) -> None:
        with self._writing() as con:
            sql.record_given_up(con, failures, message, fingerprint)

    def delete_items(self, item_ids) -> None:
        with self._writing() as con:  # one transaction: a page is gone from every table or none
            sql.delete_everywhere(con, item_ids)

    def load_index(self, documents, chunks, vector_rows, dim) -> float:
        with self._writing(dim) as con:
            sql.load_rows(con, documents, chunks, vector_rows)
        return self.rebuild_keyword_index()

    # -- ingestion reads --------------------------------------------------------------------
    def raw_item_ids(self, item_ids) -> set[str]:
        return self._read(sql.raw_item_ids, item_ids, empty=set())

    def staged_documents(self, item_ids) -> list[tuple]:
        return self._read(sql.staged_documents, item_ids, empty=[])

    def staged_chunks(self, item_ids) -> list[tuple]:
        return self._read(sql.staged_chunks, item_ids, empty=[])

    def vectors(self, chunk_ids, fingerprint) -> dict[str, list[float]]:
        return self._read(sql.stored_vectors, chunk_ids, fingerprint, empty={})

    def item_summaries(self, item_ids) -> list[tuple]:
        return self._read(sql.item_summaries, item_ids, empty=[])

    def item_errors(self, item_ids) -> list[tuple]:
        return self._read(sql.item_errors, item_ids, empty=[])

    def urls(self, item_ids) -> dict[str, str]:
        return self._read(sql.item_urls, item_ids, empty={}) if item_ids else {}

    def graph_rows(self, item_ids) -> tuple[list[tuple], list[tuple]]:
        return self._read(sql.graph_rows, item_ids, empty=([], []))

    def ingested_files(self) -> dict[str, tuple[int, str, str]]:
        return self._read(sql.read_ingested_files, empty={})

    # -- figures ----------------------------------------------------------------------------
    def table_counts(self) -> dict[str, int]:
        empty = dict.fromkeys((*sql.ITEM_TABLES, "ingest_errors"), 0)
        return self._read(sql.table_counts, empty=empty)

    def recent_errors(self, limit: int = 200) -> list[tuple]:
        return self._read(sql.recent_errors, limit, empty=[])

    def metric_counts(self, model: str) -> dict:
        empty = {"items": {}, "rows": {}, "errors": {}, "items_with_model": 0}
        return self._read(sql.metric_counts, model, empty=empty)

    def fingerprint_counts(self) -> dict[str, int]:
        return self._read(sql.fingerprint_counts, empty={})

    def example_title(self) -> str | None:
        return self._read(sql.example_title)

    def has_embeddings(self) -> bool:
        return self._read(sql.table_exists, "embeddings", empty=False)

    def embedding_coverage(self) -> tuple[int, int, int, list[str]]:
        return self._read(sql.embedding_coverage, empty=(0, 0, 0, []))

    def vector_widths(self) -> list[tuple[int, str, int]]:
        return self._read(sql.vector_widths, empty=[])

    def non_finite_vectors(self) -> int:
        return self._read(sql.non_finite_vectors, empty=0)

    # -- search -----------------------------------------------------------------------------
    def embeddings_dimension(self) -> int | None:
        return self._read(sql.embeddings_dimension)

    def _caches_vectors(self) -> bool:
        """Whether searches may rank from the process's copy of the vectors (vector_cache):
        for a file whose vectors are FLOAT[n] ranked by array_cosine_similarity, i.e. this
        class's own connect step, vector type and score (MemoryStore, DuckLakeStore and
        other overrides rank in SQL)."""
        cls = type(self)
        return all(
            getattr(cls, name) is getattr(DuckDBStore, name)
            for name in ("_open", "vector_type", "vector_score")
        )

    def vector_candidates(self, query, fingerprint, limit, url_prefix="", title="") -> list:
        score = self.vector_score(query)
        with self._reading() as con:
            if con is None:
                return []
            try:
                if not (url_prefix or title) and self._caches_vectors():
                    snapshot = self._snapshot(con, fingerprint, len(query))
                    ranked = None
                    if snapshot is not None and snapshot.matrix.shape[1] == len(query):
                        ranked = snapshot.top(sql.query_vector(con, query), limit)
                    if ranked is not None:
                        return snapshot.candidates(ranked)
                return sql.vector_candidates(
                    con, query, fingerprint, limit, url_prefix, title, score
                )
            except duckdb.CatalogException:
                return []  # no embeddings table yet (checked here, not before every search)

    def _snapshot(self, con, fingerprint, dim=None) -> vector_cache.Snapshot | None:
        """The process's copy of the vectors of ``fingerprint`` as they are in ``con``: loaded
        (``dim`` given) when the previous search saw the same vectors, else only if held."""
        key = (str(self.path.resolve()), fingerprint)
        if dim is None and not vector_cache.CACHE.holds(key):
            return None  # nothing to check against: spare the signature's read
        # A read-only session sees one state of the file (no process may write while it is
        # open), so its signature is read once for the vector and keyword ranks of a search.
        memo = self.__dict__.setdefault("_signatures", {}) if self._session_reads() else {}
        if fingerprint not in memo:
            memo[fingerprint] = sql.vector_signature(con, fingerprint)
        signature = memo[fingerprint]
        if dim is None:
            return vector_cache.CACHE.current(key, signature)
        return vector_cache.CACHE.snapshot(
            key, signature, lambda: sql.load_vectors(con, fingerprint, dim)
        )

    def _session_reads(self) -> bool:
        return self._con is not None and self._read_only

    def keyword_candidates(self, question, fingerprint, limit, url_prefix="", title="") -> list:
        with self._reading() as con:
            if con is None:
                return []
            snapshot = None
            if not (url_prefix or title) and self._caches_vectors():
                snapshot = self._snapshot(con, fingerprint)
            try:
                return sql.keyword_candidates(
                    con, question, fingerprint, limit, url_prefix, title,
                    rows_of=snapshot.candidates if snapshot is not None else None,
                )  # fmt: skip
            except duckdb.CatalogException:
                return []  # no keyword index yet (its tokenize macro is missing)

    def keyword_index_current(self) -> bool:
        with self._reading() as con:
            return con is not None and sql.fts_is_current(con)

    def keyword_index_age_s(self) -> float | None:
        return self._read(sql.fts_age_s)

    def rebuild_keyword_index(self) -> float:
        with self.session(read_only=False) as store:
            return sql.rebuild_fts_index(store._con)


class MemoryStore(DuckDBStore):
    """The same Store on an in-memory DuckDB database: fast unit tests, nothing on disk.
    One connection lives as long as the object (an in-memory database dies with it)."""

    def __init__(self) -> None:
        super().__init__(Path(":memory:"))
        self._memory = duckdb.connect(":memory:")

    def exists(self) -> bool:
        return True

    @contextlib.contextmanager
    def _open(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        yield self._memory

    def close(self) -> None:
        self._memory.close()
