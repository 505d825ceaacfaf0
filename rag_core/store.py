"""The DuckDB store: schema, short write transactions, lock-tolerant connections.

DuckDB lets one process hold the file for writing and then no other process may
open it, not even to read. So every user of the file (ingestion runs, the CLI's
``status`` and ``search``) opens it briefly and retries while another holds it.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb

LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")

SCHEMA = """
CREATE TABLE IF NOT EXISTS raw_items (
    item_id VARCHAR PRIMARY KEY,
    url VARCHAR NOT NULL,
    requested_url VARCHAR,
    status INTEGER,
    content_type VARCHAR,
    title VARCHAR,
    fetched_at VARCHAR,
    html_chars BIGINT,
    truncated BOOLEAN,
    links VARCHAR[],
    file_path VARCHAR
);
CREATE TABLE IF NOT EXISTS documents (
    item_id VARCHAR PRIMARY KEY,
    url VARCHAR NOT NULL,
    title VARCHAR,
    text VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    word_count INTEGER,
    headings VARCHAR[],
    fetched_at VARCHAR
);
CREATE TABLE IF NOT EXISTS chunks (
    chunk_id VARCHAR PRIMARY KEY,
    item_id VARCHAR NOT NULL,
    chunk_index INTEGER NOT NULL,
    heading VARCHAR,
    text VARCHAR NOT NULL,
    token_count INTEGER NOT NULL,
    content_hash VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS ingest_errors (
    item_id VARCHAR NOT NULL,
    stage VARCHAR NOT NULL,
    error VARCHAR NOT NULL,
    run_id VARCHAR,
    occurred_at TIMESTAMPTZ DEFAULT current_timestamp,
    PRIMARY KEY (item_id, stage)
);
"""

# The vector column's width is the model's dimension, so this table is created on first use.
EMBEDDINGS_DDL = """
CREATE TABLE IF NOT EXISTS embeddings (
    chunk_id VARCHAR PRIMARY KEY,
    item_id VARCHAR NOT NULL,
    model VARCHAR NOT NULL,
    embedding FLOAT[{dim}] NOT NULL
);
"""

ITEM_TABLES = ("raw_items", "documents", "chunks", "embeddings")


class StoreLockedError(RuntimeError):
    """The DuckDB file stayed locked by another process for longer than the timeout."""


def is_lock_error(exc: BaseException) -> bool:
    """True for DuckDB's 'another process holds the file' errors (worth a retry)."""
    return isinstance(exc, duckdb.Error) and any(m in str(exc) for m in LOCK_MARKERS)


@contextlib.contextmanager
def connect(
    path: Path, read_only: bool = False, timeout_s: float = 120.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the database, retrying with jittered backoff while another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.Error as exc:
            if not is_lock_error(exc):
                raise
            if read_only and not path.exists():
                raise
            if time.monotonic() >= deadline:
                raise StoreLockedError(
                    f"{path} stayed locked by another process for {timeout_s:.0f} s: {exc}"
                ) from exc
            time.sleep(delay + random.uniform(0, delay))
            delay = min(delay * 2, 1.0)
    try:
        yield con
    finally:
        con.close()


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT, rolling back on any error so a batch is stored whole or not at all."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def ensure_schema(con: duckdb.DuckDBPyConnection, dim: int | None = None) -> None:
    """Create the tables if missing; the embeddings table needs the model's dimension."""
    con.execute(SCHEMA)
    if dim is not None:
        con.execute(EMBEDDINGS_DDL.format(dim=int(dim)))
        stored = embeddings_dimension(con)
        if stored is not None and stored != dim:
            raise ValueError(
                f"the embeddings table holds {stored}-dimensional vectors but the model gives "
                f"{dim}: point DUCKDB_PATH at a new file to use this EMBEDDING_MODEL"
            )


def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether ``table`` exists in the main schema."""
    row = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
    ).fetchone()
    return bool(row and row[0])


def embeddings_dimension(con: duckdb.DuckDBPyConnection) -> int | None:
    """Width of the embeddings' FLOAT[n] column, or None when the table is absent."""
    row = con.execute(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'embeddings' AND column_name = 'embedding'"
    ).fetchone()
    if not row:
        return None
    text = str(row[0])
    return int(text[text.index("[") + 1 : text.index("]")])


def delete_items(con: duckdb.DuckDBPyConnection, table: str, item_ids: Sequence[str]) -> None:
    """Delete every row of ``table`` that belongs to one of ``item_ids``."""
    if item_ids and table_exists(con, table):
        con.execute(f"DELETE FROM {table} WHERE item_id IN (SELECT unnest(?))", [list(item_ids)])


def insert_rows(
    con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str], rows: Sequence[tuple]
) -> None:
    """Insert rows column-wise through ``unnest`` (one statement, far faster than executemany)."""
    if not rows:
        return
    column_values = [list(values) for values in zip(*rows, strict=True)]
    placeholders = ", ".join(f"unnest(${i + 1})" for i in range(len(columns)))
    con.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {placeholders}", column_values)


def metric_counts(con: duckdb.DuckDBPyConnection, model: str) -> dict:
    """Figures for the metrics endpoint: items and rows per table, failed items by stage, and
    items with a vector of ``model`` (index coverage)."""
    counts: dict = {"items": {}, "rows": {}, "errors": {}, "items_with_model": 0}
    for table in ITEM_TABLES:
        if table_exists(con, table):
            rows, items = con.execute(
                f"SELECT count(*), count(DISTINCT item_id) FROM {table}"
            ).fetchone()
            counts["rows"][table], counts["items"][table] = rows, items
    if table_exists(con, "ingest_errors"):
        counts["errors"] = dict(
            con.execute("SELECT stage, count(*) FROM ingest_errors GROUP BY stage").fetchall()
        )
    if table_exists(con, "embeddings"):
        counts["items_with_model"] = con.execute(
            "SELECT count(DISTINCT item_id) FROM embeddings WHERE model = ?", [model]
        ).fetchone()[0]
    return counts
