"""The DuckDB store: schema, short write transactions, lock-tolerant connections.

DuckDB lets one process hold the file for writing and then no other process may
open it, not even to read. So every user of the file (ingestion runs, the CLI's
``status`` and ``search``) opens it briefly and retries while another holds it.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
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
    embedding {vector_type} NOT NULL
);
"""

ITEM_TABLES = ("raw_items", "documents", "chunks", "embeddings")


class StoreLockedError(RuntimeError):
    """The DuckDB file stayed locked by another process for longer than the timeout."""


def is_lock_error(exc: BaseException) -> bool:
    """True for DuckDB's 'another process holds the file' errors (worth a retry)."""
    return isinstance(exc, duckdb.Error) and any(m in str(exc) for m in LOCK_MARKERS)


# Hook for a store that is not this local file (STORE_BACKEND=ducklake,
# rag_core/stores/ducklake_store.py): DUCKDB_PATH -> a function opening a connection that has
# the lake attached and in use. Every caller of connect() (runs, CLI, sensor) then reads and
# writes the lake with the same SQL.
OPENERS: dict[str, Callable[[bool], contextlib.AbstractContextManager]] = {}
# The database name a lake is attached under; is_lake() tells its connections apart.
LAKE_ALIAS = "lake"


def exists(path: Path) -> bool:
    """Whether the store at ``path`` exists (a lake behind an opener is taken to)."""
    return str(path) in OPENERS or path.exists()


def is_lake(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``con`` works on a DuckLake (no key constraints, vectors as FLOAT[]). By the
    catalog's type, not its name: a DuckDB file named lake.duckdb is still a file."""
    row = con.execute(
        "SELECT type FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    return bool(row) and row[0] == "ducklake"


def _ddl(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    # DuckLake has no PRIMARY KEY/UNIQUE constraints ("not supported in DuckLake"); the
    # writes never rely on them: each replaces an item's rows (delete, then insert).
    if is_lake(con):
        sql = re.sub(r",\s*PRIMARY KEY \([^)]*\)", "", sql).replace(" PRIMARY KEY", "")
    con.execute(sql)


def vector_type(con: duckdb.DuckDBPyConnection, dim: int) -> str:
    """The vector column's type: FLOAT[dim], or FLOAT[] on DuckLake, which rejects
    fixed-size arrays ("unsupported type FLOAT[3]")."""
    return "FLOAT[]" if is_lake(con) else f"FLOAT[{int(dim)}]"


@contextlib.contextmanager
def connect(
    path: Path, read_only: bool = False, timeout_s: float = 120.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the database, retrying with jittered backoff while another process holds it."""
    opener = OPENERS.get(str(path))
    if opener is not None:
        with opener(read_only) as con:
            yield con
        return
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
    _ddl(con, SCHEMA)
    _ddl(con, STAGING_SCHEMA)
    _ddl(con, INGESTED_SCHEMA)
    if dim is not None:
        _ddl(con, EMBEDDINGS_DDL.format(vector_type=vector_type(con, dim)))
        # The index fingerprint of each vector (rag_core.fingerprint); added to older files.
        con.execute("ALTER TABLE embeddings ADD COLUMN IF NOT EXISTS fingerprint VARCHAR")
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
    if text.endswith("[]"):  # a list column (DuckLake): the width of a stored vector
        first = con.execute("SELECT len(embedding) FROM embeddings LIMIT 1").fetchone()
        return int(first[0]) if first else None
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


# -- staging: a page's new version is built aside and swapped in whole --------------------------
#
# The documents and chunks stages write here, not to the tables readers use; the embeddings
# stage then replaces an item's documents, chunks and embeddings rows in ONE transaction
# (publish_items). A reader sees a page's old version or its new one, never neither (new
# chunks without vectors) and never a mix (a new document with old chunks).
STAGING_SCHEMA = """
CREATE TABLE IF NOT EXISTS staged_documents (
    item_id VARCHAR PRIMARY KEY,
    url VARCHAR NOT NULL,
    title VARCHAR,
    text VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    word_count INTEGER,
    headings VARCHAR[],
    fetched_at VARCHAR
);
CREATE TABLE IF NOT EXISTS staged_chunks (
    chunk_id VARCHAR PRIMARY KEY,
    item_id VARCHAR NOT NULL,
    chunk_index INTEGER NOT NULL,
    heading VARCHAR,
    text VARCHAR NOT NULL,
    token_count INTEGER NOT NULL,
    content_hash VARCHAR NOT NULL
);
"""
STAGING_TABLES = ("staged_documents", "staged_chunks")


def publish_items(
    con: duckdb.DuckDBPyConnection,
    item_ids: Sequence[str],
    doc_columns: Sequence[str],
    chunk_columns: Sequence[str],
    vector_rows: Sequence[tuple],
) -> None:
    """Inside the caller's transaction: make the staged version of ``item_ids`` (with their
    vectors) the published one in documents, chunks and embeddings, and clear it from
    staging. Items without a staged document keep their published one."""
    ids = list(item_ids)
    if not ids:
        return
    docs, cols = ", ".join(doc_columns), ", ".join(chunk_columns)
    staged_docs = (
        "SELECT item_id FROM staged_documents WHERE item_id IN (SELECT unnest(?))"
    )
    con.execute(f"DELETE FROM documents WHERE item_id IN ({staged_docs})", [ids])
    con.execute(
        f"INSERT INTO documents ({docs}) SELECT {docs} FROM staged_documents "
        "WHERE item_id IN (SELECT unnest(?))",
        [ids],
    )
    delete_items(con, "chunks", ids)
    con.execute(
        f"INSERT INTO chunks ({cols}) SELECT {cols} FROM staged_chunks "
        "WHERE item_id IN (SELECT unnest(?))",
        [ids],
    )
    delete_items(con, "embeddings", ids)
    insert_rows(
        con, "embeddings", ("chunk_id", "item_id", "model", "fingerprint", "embedding"),
        vector_rows,
    )  # fmt: skip
    for table in STAGING_TABLES:
        delete_items(con, table, ids)


def example_title(con: duckdb.DuckDBPyConnection) -> str | None:
    """A page title to suggest as a first search: the longest document's (most to find in)."""
    if not table_exists(con, "documents"):
        return None
    row = con.execute(
        "SELECT title FROM documents WHERE coalesce(title, '') <> '' "
        "ORDER BY word_count DESC, item_id LIMIT 1"
    ).fetchone()
    return row[0] if row else None


# --- full-text search (BM25 through DuckDB's fts extension) -------------------------------
#
# The fts index is a snapshot: DuckDB does not update it when `chunks` changes. Its state
# table records which `chunks` it was built from (row count and an order-free checksum of the
# chunk ids); a search that finds it stale rebuilds it when it can get the file for writing,
# and otherwise ranks with the stale index (rows deleted since are dropped by the join, new
# rows are missing from keyword ranks until the next rebuild).

FTS_SCHEMA = "fts_main_chunks"
FTS_STATE_DDL = """
CREATE TABLE IF NOT EXISTS fts_state (
    chunks BIGINT NOT NULL,
    checksum UBIGINT NOT NULL,
    built_at TIMESTAMPTZ DEFAULT current_timestamp,
    build_s DOUBLE
);
"""


def fts_extension_path() -> str:
    """The fts extension binary shipped in the duckdb-extension-fts wheel (loads offline)."""
    import duckdb_extension_fts

    # The wheel holds extensions/v<duckdb version>/fts.duckdb_extension and no helper.
    root = Path(duckdb_extension_fts.__file__).parent / "extensions"
    path = root / f"v{duckdb.__version__}" / "fts.duckdb_extension"
    if not path.is_file():
        found = sorted(p.parent.name for p in root.glob("v*/fts.duckdb_extension"))
        raise RuntimeError(
            f"the fts extension for DuckDB {duckdb.__version__} is not installed (the "
            f"duckdb-extension-fts wheel has {found or 'none'}): install the matching "
            "duckdb-extension-fts version"
        )
    return str(path)


def load_fts(con: duckdb.DuckDBPyConnection) -> None:
    """Load the fts extension from the installed wheel, never from the network."""
    con.execute(f"LOAD '{fts_extension_path()}'")


def chunks_signature(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(row count, order-free checksum of chunk ids) of the chunks table."""
    row = con.execute(
        "SELECT count(*), coalesce(bit_xor(hash(chunk_id)), 0) FROM chunks"
    ).fetchone()
    return int(row[0]), int(row[1])


def fts_is_current(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether an fts index exists and was built from the chunks table as it is now."""
    if not table_exists(con, "fts_state") or not fts_index_exists(con):
        return False
    row = con.execute("SELECT chunks, checksum FROM fts_state").fetchone()
    return row is not None and (int(row[0]), int(row[1])) == chunks_signature(con)


def fts_age_s(con: duckdb.DuckDBPyConnection) -> float | None:
    """Seconds since the keyword index was last built, or None when it never was."""
    if not table_exists(con, "fts_state") or not fts_index_exists(con):
        return None
    row = con.execute(
        "SELECT epoch(current_timestamp) - epoch(max(built_at)) FROM fts_state"
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def fts_index_exists(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the chunks table has an fts index (its schema exists)."""
    row = con.execute(
        "SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?", [FTS_SCHEMA]
    ).fetchone()
    return bool(row and row[0])


def rebuild_fts_index(con: duckdb.DuckDBPyConnection) -> float:
    """(Re)build the BM25 index over chunk heading and text; returns the seconds it took."""
    started = time.monotonic()
    load_fts(con)
    signature = chunks_signature(con)
    # English stemming and stop words: both question sets are English documentation.
    con.execute(
        "PRAGMA create_fts_index('chunks', 'chunk_id', 'heading', 'text', "
        "stemmer = 'english', stopwords = 'english', overwrite = 1)"
    )
    elapsed = time.monotonic() - started
    con.execute(FTS_STATE_DDL)
    con.execute("DELETE FROM fts_state")
    con.execute(
        "INSERT INTO fts_state (chunks, checksum, build_s) VALUES (?, ?, ?)",
        [signature[0], signature[1], elapsed],
    )
    return elapsed


def keyword_candidates(
    con: duckdb.DuckDBPyConnection,
    question: str,
    fingerprint: str,
    limit: int,
    url_prefix: str = "",
    title: str = "",
) -> list[tuple]:
    """Top ``limit`` chunks by BM25 for ``question`` among those with a vector of index
    ``fingerprint``: (chunk_id, item_id, title, url, heading, text, content_hash, chunk_index,
    score)."""
    load_fts(con)
    return con.execute(
        f"""
        SELECT * FROM (
            SELECT c.chunk_id, c.item_id, d.title, d.url, c.heading, c.text, d.content_hash,
                   c.chunk_index,
                   {FTS_SCHEMA}.match_bm25(c.chunk_id, $q) AS score
            FROM chunks c JOIN documents d ON d.item_id = c.item_id
            WHERE {_filters_sql()}
              AND c.chunk_id IN (SELECT chunk_id FROM embeddings WHERE fingerprint = $fingerprint)
        ) WHERE score IS NOT NULL
        ORDER BY score DESC, chunk_id
        LIMIT $limit
        """,
        {
            "q": question,
            "limit": limit,
            "prefix": url_prefix,
            "title": title,
            "fingerprint": fingerprint,
        },
    ).fetchall()


def vector_candidates(
    con: duckdb.DuckDBPyConnection,
    query: Sequence[float],
    fingerprint: str,
    limit: int,
    url_prefix: str = "",
    title: str = "",
) -> list[tuple]:
    """Top ``limit`` chunks by cosine similarity to ``query``: (chunk_id, item_id, title, url,
    heading, text, content_hash, chunk_index, score). A top-N scan (no window over the table):
    callers de-duplicate the few rows returned."""
    filtered = bool(url_prefix or title)
    # The question vector goes in as a constant: as a parameter, DuckDB casts the list to
    # FLOAT[n] on every row (measured ~5x slower on 20k rows). Only floats are formatted here.
    vector = "[" + ",".join(repr(float(x)) for x in query) + "]::" + vector_type(con, len(query))
    # DuckLake stores FLOAT[] lists (no fixed-size arrays): ranked as lists, measured in
    # bench/scale_out.py against casting each row to FLOAT[n].
    similarity = "list_cosine_similarity" if is_lake(con) else "array_cosine_similarity"
    join = "JOIN chunks c USING (chunk_id) JOIN documents d ON d.item_id = c.item_id"
    return con.execute(
        f"""
        WITH top AS (
            SELECT e.chunk_id, {similarity}(e.embedding, {vector}) AS score
            FROM embeddings e {join if filtered else ""}
            WHERE e.fingerprint = $fingerprint {"AND " + _filters_sql() if filtered else ""}
            ORDER BY score DESC, e.chunk_id
            LIMIT $limit
        )
        SELECT c.chunk_id, c.item_id, d.title, d.url, c.heading, c.text, d.content_hash,
               c.chunk_index, top.score
        FROM top JOIN chunks c USING (chunk_id) JOIN documents d ON d.item_id = c.item_id
        ORDER BY top.score DESC, c.chunk_id
        """,
        {"fingerprint": fingerprint, "limit": limit}
        | ({"prefix": url_prefix, "title": title} if filtered else {}),
    ).fetchall()


def _filters_sql() -> str:
    # Empty filter values match everything; the title filter is a case-insensitive substring.
    return (
        "($prefix = '' OR starts_with(d.url, $prefix)) "
        "AND ($title = '' OR contains(lower(d.title), lower($title)))"
    )


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


# -- reconciliation: which version of each item file the stores hold ------------------------------
#
# raw_items marks a file "started" with the mtime it read; the embeddings stage marks it
# "stored" (published) or "error" (a stage recorded why). An item file whose mtime differs,
# or that is still "started" when no run is in flight, was not ingested: the sensor asks
# for it again (sensors/raw_item_files.py, rag_core/reconcile.py).
INGESTED_SCHEMA = """
CREATE TABLE IF NOT EXISTS ingested_files (
    item_id VARCHAR PRIMARY KEY,
    mtime_ns BIGINT NOT NULL,
    state VARCHAR NOT NULL,
    fingerprint VARCHAR
);
"""


def mark_files_started(con: duckdb.DuckDBPyConnection, mtimes: dict[str, int]) -> None:
    """Record the file versions a run is about to ingest."""
    delete_items(con, "ingested_files", list(mtimes))
    rows = [(key, mtime, "started") for key, mtime in mtimes.items()]
    insert_rows(con, "ingested_files", ("item_id", "mtime_ns", "state"), rows)


def set_files_state(
    con: duckdb.DuckDBPyConnection, item_ids: Sequence[str], state: str, fingerprint: str
) -> None:
    """Mark the started versions of ``item_ids`` "stored" or "error" under ``fingerprint``."""
    if item_ids:
        con.execute(
            "UPDATE ingested_files SET state = ?, fingerprint = ? "
            "WHERE item_id IN (SELECT unnest(?))",
            [state, fingerprint, list(item_ids)],
        )


def read_ingested_files(path: Path, timeout_s: float) -> dict[str, tuple[int, str, str]]:
    """item_id -> (mtime_ns, state, fingerprint) of every ingested file version."""
    if not exists(path):
        return {}
    with connect(path, read_only=True, timeout_s=timeout_s) as con:
        if not table_exists(con, "ingested_files"):
            return {}
        rows = con.execute(
            "SELECT item_id, mtime_ns, state, fingerprint FROM ingested_files"
        ).fetchall()
    return {key: (mtime, state, fp) for key, mtime, state, fp in rows}


def fingerprint_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Pages with vectors per index fingerprint ('' for vectors stored before fingerprints)."""
    if not table_exists(con, "embeddings"):
        return {}
    rows = con.execute(
        "SELECT coalesce(fingerprint, ''), count(DISTINCT item_id) FROM embeddings GROUP BY 1"
    ).fetchall()
    return dict(rows)


def record_given_up(
    path: Path, failures: dict[str, int], message: str, fingerprint: str, timeout_s: float
) -> None:
    """Record items that failed every attempt: one ingest_errors row each (stage
    "ingest"), and their file version marked "error" so they are not asked for again
    until the file changes."""
    with connect(path, timeout_s=timeout_s) as con:
        ensure_schema(con)
        with transaction(con):
            keys = list(failures)
            con.execute(
                "DELETE FROM ingest_errors WHERE stage = 'ingest' "
                "AND item_id IN (SELECT unnest(?))",
                [keys],
            )
            insert_rows(
                con, "ingest_errors", ("item_id", "stage", "error"),
                [(key, "ingest", message) for key in keys],
            )  # fmt: skip
            delete_items(con, "ingested_files", keys)
            insert_rows(
                con, "ingested_files", ("item_id", "mtime_ns", "state", "fingerprint"),
                [(key, mtime, "error", fingerprint) for key, mtime in failures.items()],
            )  # fmt: skip
