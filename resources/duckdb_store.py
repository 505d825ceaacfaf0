"""DuckDB resource: the tables users query (documents, chunks, embeddings) and stage errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
import duckdb

from rag_core import store


class DuckDBStore(dg.ConfigurableResource):
    """The DuckDB file every ingestion stage writes; opened briefly per transaction."""

    path: str
    lock_timeout_seconds: float = 120.0

    @property
    def db_path(self) -> Path:
        return Path(self.path)

    @contextlib.contextmanager
    def connection(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; waits (with backoff) while another process holds the file."""
        with store.connect(self.db_path, read_only, self.lock_timeout_seconds) as con:
            if not read_only:
                store.ensure_schema(con)
            yield con

    @contextlib.contextmanager
    def write(self, dim: int | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """One write transaction: everything inside commits together or not at all."""
        with store.connect(self.db_path, False, self.lock_timeout_seconds) as con:
            store.ensure_schema(con, dim)
            with store.transaction(con):
                yield con

    def replace_items(
        self,
        table: str,
        item_ids: Sequence[str],
        columns: Sequence[str],
        rows: Sequence[tuple],
        dim: int | None = None,
    ) -> None:
        """Replace all rows of ``item_ids`` in ``table`` with ``rows`` in one transaction."""
        with self.write(dim) as con:
            store.delete_items(con, table, item_ids)
            store.insert_rows(con, table, columns, rows)

    def store_stage(
        self,
        stage: str,
        batch: Sequence[str],
        table: str,
        columns: Sequence[str],
        rows: Sequence[tuple],
        stored_ids: Sequence[str],
        errors: dict[str, str],
        run_id: str,
        dim: int | None = None,
    ) -> None:
        """One stage's result for a batch of items, in one transaction.

        The rows of ``stored_ids`` in ``table`` are replaced by ``rows``; the stage's
        error rows of the whole ``batch`` are replaced by ``errors``. Items that failed
        keep their last good rows, so a broken re-fetch never loses stored data.
        """
        with self.write(dim) as con:
            store.delete_items(con, table, stored_ids)
            store.insert_rows(con, table, columns, rows)
            _replace_errors(con, stage, batch, errors, run_id)

    def publish(
        self,
        item_ids: Sequence[str],
        doc_columns: Sequence[str],
        chunk_columns: Sequence[str],
        vector_rows: Sequence[tuple],
        dim: int | None = None,
    ) -> None:
        """Swap in the staged version of ``item_ids`` with their vectors, in one transaction
        (store.publish_items)."""
        with self.write(dim) as con:
            store.publish_items(con, item_ids, doc_columns, chunk_columns, vector_rows)

    def mark_files_started(self, mtimes: dict[str, int]) -> None:
        """Record the item file versions this run ingests (store.mark_files_started)."""
        with self.write() as con:
            store.mark_files_started(con, mtimes)

    def set_files_state(self, item_ids: Sequence[str], state: str, fingerprint: str) -> None:
        """Mark ingested file versions "stored" or "error" (store.set_files_state)."""
        with self.write() as con:
            store.set_files_state(con, item_ids, state, fingerprint)

    def record_errors(
        self, stage: str, item_ids: Sequence[str], errors: dict[str, str], run_id: str
    ) -> None:
        """Set the stage's error rows for ``item_ids``: clear the fixed ones, store the new ones."""
        with self.write() as con:
            _replace_errors(con, stage, item_ids, errors, run_id)

    def query(self, sql: str, params: Sequence | None = None) -> list[tuple]:
        """Run a read query on a short-lived connection and return all rows."""
        with self.connection() as con:
            return con.execute(sql, list(params or [])).fetchall()


def _replace_errors(
    con: duckdb.DuckDBPyConnection,
    stage: str,
    item_ids: Sequence[str],
    errors: dict[str, str],
    run_id: str,
) -> None:
    if item_ids:
        con.execute(
            "DELETE FROM ingest_errors WHERE stage = ? AND item_id IN (SELECT unnest(?))",
            [stage, list(item_ids)],
        )
    rows = [(key, stage, message[:2000], run_id) for key, message in errors.items()]
    store.insert_rows(con, "ingest_errors", ("item_id", "stage", "error", "run_id"), rows)
