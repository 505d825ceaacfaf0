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

from rag_core.stores.base import (
    CHUNK_COLUMNS,
    DOC_COLUMNS,
    ITEM_TABLES,
    RAW_COLUMNS,
    STAGED,
    STAGING_TABLES,
    TABLE_COLUMNS,
    VECTOR_COLUMNS,
    Candidate,
    Store,
    StoreLockedError,
    columns,
)

LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")


def table_ddl(table: str, vector_type: str | None = None) -> str:
    """CREATE TABLE IF NOT EXISTS for ``table`` from its one declaration (base.TABLE_COLUMNS);
    the embeddings table takes the implementation's ``vector_type`` for its vector column."""
    cols = [f"{name} {kind}" for name, kind in TABLE_COLUMNS[STAGED.get(table, table)]]
    if table == "embeddings":
        cols.append(f"embedding {vector_type} NOT NULL")
    if table == "ingest_errors":
        cols.append("PRIMARY KEY (item_id, stage)")
    return f"CREATE TABLE IF NOT EXISTS {table} (\n    " + ",\n    ".join(cols) + "\n);\n"


def vector_type(dim: int) -> str:
    """DuckDB's fixed-width array: array_cosine_similarity needs it, and it stores compactly."""
    return f"FLOAT[{int(dim)}]"


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


def ensure_schema(
    con: duckdb.DuckDBPyConnection,
    dim: int | None = None,
    vector_type=vector_type,
    ddl=table_ddl,
) -> None:
    """Create the tables if missing; the embeddings table needs the model's dimension.
    ``vector_type`` and ``ddl`` are a store implementation's (DuckDBStore's override points)."""
    for table in ("raw_items", "documents", "chunks", "ingest_errors", *STAGING_TABLES):
        con.execute(ddl(table))
    con.execute(ddl("ingested_files"))
    if dim is not None:
        con.execute(ddl("embeddings", vector_type(dim)))
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
    """Width of the embeddings' FLOAT[n] column (of a stored vector where the column is a
    FLOAT[] list), or None when the table is absent or holds no vector to measure."""
    row = con.execute(
        "SELECT data_type FROM information_schema.columns "
        "WHERE table_name = 'embeddings' AND column_name = 'embedding'"
    ).fetchone()
    if not row:
        return None
    text = str(row[0])
    width = text[text.index("[") + 1 : text.index("]")]
    if width:
        return int(width)
    row = con.execute("SELECT len(embedding) FROM embeddings LIMIT 1").fetchone()
    return int(row[0]) if row else None


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
def publish_items(
    con: duckdb.DuckDBPyConnection,
    item_ids: Sequence[str],
    vector_rows: Sequence[tuple],
) -> None:
    """Inside the caller's transaction: make the staged version of ``item_ids`` (with their
    vectors) the published one in documents, chunks and embeddings, and clear it from
    staging. Items without a staged document keep their published one."""
    ids = list(item_ids)
    if not ids:
        return
    docs, cols = ", ".join(DOC_COLUMNS), ", ".join(CHUNK_COLUMNS)
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
    insert_rows(con, "embeddings", VECTOR_COLUMNS, vector_rows)
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
    score: str | None = None,
) -> list[tuple]:
    """Top ``limit`` chunks by cosine similarity to ``query``: (chunk_id, item_id, title, url,
    heading, text, content_hash, chunk_index, score). A top-N scan (no window over the table):
    callers de-duplicate the few rows returned. ``score`` is the similarity expression over
    ``e.embedding`` (default: ``array_score(query)``; a store of FLOAT[] lists gives its own)."""
    filtered = bool(url_prefix or title)
    # The question vector goes in as a constant: as a parameter, DuckDB casts the list to
    # FLOAT[n] on every row (measured ~5x slower on 20k rows). Only floats are formatted here.
    score = score or array_score(query)
    join = "JOIN chunks c USING (chunk_id) JOIN documents d ON d.item_id = c.item_id"
    return con.execute(
        f"""
        WITH top AS (
            SELECT e.chunk_id, {score} AS score
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


def vector_literal(query: Sequence[float]) -> str:
    """The question vector as a SQL list constant (only floats are formatted in)."""
    return "[" + ",".join(repr(float(x)) for x in query) + "]"


def array_score(query: Sequence[float]) -> str:
    """Cosine similarity of the FLOAT[n] column ``e.embedding`` with ``query``."""
    return f"array_cosine_similarity(e.embedding, {vector_literal(query)}::FLOAT[{len(query)}])"


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


def read_ingested_files(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, str, str]]:
    """item_id -> (mtime_ns, state, fingerprint) of every ingested file version."""
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
    con: duckdb.DuckDBPyConnection, failures: dict[str, int], message: str, fingerprint: str
) -> None:
    """Inside the caller's transaction: record items that failed every attempt: one
    ingest_errors row each (stage "ingest"), and their file version marked "error" so they
    are not asked for again until the file changes."""
    keys = list(failures)
    replace_errors(con, "ingest", keys, dict.fromkeys(keys, message), None)
    delete_items(con, "ingested_files", keys)
    insert_rows(
        con, "ingested_files", columns("ingested_files"),
        [(key, mtime, "error", fingerprint) for key, mtime in failures.items()],
    )  # fmt: skip


def replace_errors(
    con: duckdb.DuckDBPyConnection,
    stage: str,
    item_ids: Sequence[str],
    errors: dict[str, str],
    run_id: str | None,
) -> None:
    """Inside the caller's transaction: the stage's error rows of ``item_ids`` become
    ``errors`` (fixed items lose theirs)."""
    if item_ids:
        con.execute(
            "DELETE FROM ingest_errors WHERE stage = ? AND item_id IN (SELECT unnest(?))",
            [stage, list(item_ids)],
        )
    rows = [(key, stage, message[:2000], run_id) for key, message in errors.items()]
    insert_rows(con, "ingest_errors", ("item_id", "stage", "error", "run_id"), rows)


def _in_list(column: str = "item_id") -> str:
    return f"{column} IN (SELECT unnest(?))"


class DuckDBStore(Store):
    """The Store on one DuckDB file, opened briefly per call (or per ``session``) and
    retrying while another process holds it.

    A second implementation on DuckDB (a DuckLake catalog with many writers) overrides the
    points that differ: ``vector_type`` and ``vector_score`` (the embeddings column and
    how search ranks it), ``table_ddl`` (e.g. without key constraints) and ``_open`` (how a
    connection is made and the catalog attached).
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
        return vector_type(dim)

    def vector_score(self, query: Sequence[float]) -> str:
        """SQL for the cosine similarity of the stored vector (``e.embedding``) and ``query``;
        a store of FLOAT[] lists overrides it (e.g. with list_cosine_similarity)."""
        return array_score(query)

    def table_ddl(self, table: str, vector_type: str | None = None) -> str:
        """CREATE TABLE IF NOT EXISTS for ``table`` (from its one declaration)."""
        return table_ddl(table, vector_type)

    @contextlib.contextmanager
    def _open(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """A new connection to the store (waits out another process's lock)."""
        with connect(self.path, read_only, self.lock_timeout_s) as con:
            yield con

    def exists(self) -> bool:
        """Whether the store holds anything yet (reads of a missing store return nothing)."""
        return self.path.exists()

    # -- connections ------------------------------------------------------------------------
    @contextlib.contextmanager
    def session(self, read_only: bool = True) -> Iterator[DuckDBStore]:
        if self._con is not None:
            yield self
            return
        bound = type(self).__new__(type(self))
        bound.__dict__.update(self.__dict__)
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
            with transaction(self._con):
                yield self._con
            return
        with self._open(False) as con:
            self._ensure(con, dim)
            with transaction(con):
                yield con

    def _ensure(self, con: duckdb.DuckDBPyConnection, dim: int | None = None) -> None:
        ensure_schema(con, dim, self.vector_type, self.table_ddl)

    def _rows(self, sql: str, params: Sequence | dict | None = None, table: str = "") -> list:
        with self._reading() as con:
            if con is None or (table and not table_exists(con, table)):
                return []
            args = params if isinstance(params, dict) else list(params or [])
            return con.execute(sql, args).fetchall()

    # -- ingestion writes -------------------------------------------------------------------
    def mark_files_started(self, mtimes: dict[str, int]) -> None:
        with self._writing() as con:
            mark_files_started(con, mtimes)

    def _store_stage(
        self,
        stage: str,
        table: str,
        batch: Sequence[str],
        rows: Sequence[tuple],
        stored_ids: Sequence[str],
        errors: dict[str, str],
        run_id: str,
    ) -> None:
        """The rows of ``stored_ids`` in ``table`` become ``rows``; the stage's errors of the
        whole ``batch`` become ``errors``; in one transaction. Items that failed keep their
        last good rows, so a broken re-fetch never loses stored data."""
        with self._writing() as con:
            delete_items(con, table, stored_ids)
            insert_rows(con, table, columns(table), rows)
            replace_errors(con, stage, batch, errors, run_id)

    def store_raw_items(self, batch, rows, errors, run_id) -> None:
        self._store_stage("raw_items", "raw_items", batch, rows, [r[0] for r in rows], errors,
                          run_id)  # fmt: skip

    def stage_documents(self, batch, rows, errors, run_id) -> None:
        # Every key's staged row is replaced, so a failed item leaves no stale one.
        self._store_stage("documents", "staged_documents", batch, rows, batch, errors, run_id)

    def stage_chunks(self, batch, rows, errors, run_id) -> None:
        self._store_stage("chunks", "staged_chunks", batch, rows, batch, errors, run_id)

    def publish(self, item_ids, vector_rows, dim=None) -> None:
        with self._writing(dim) as con:
            publish_items(con, item_ids, vector_rows)

    def set_files_state(self, item_ids, state, fingerprint) -> None:
        with self._writing() as con:
            set_files_state(con, item_ids, state, fingerprint)

    def record_errors(self, stage, item_ids, errors, run_id) -> None:
        with self._writing() as con:
            replace_errors(con, stage, item_ids, errors, run_id)

    def record_given_up(self, failures, message, fingerprint) -> None:
        with self._writing() as con:
            record_given_up(con, failures, message, fingerprint)

    def delete_items(self, item_ids) -> None:
        keys = list(item_ids)
        with self._writing() as con:  # one transaction: a page is gone from every table or none
            for table in (*ITEM_TABLES, *STAGING_TABLES, "ingested_files", "ingest_errors"):
                delete_items(con, table, keys)

    def load_index(self, documents, chunks, vector_rows, dim) -> float:
        # Document rows may stop after any leading columns (evaluation stores no word count).
        doc_columns = DOC_COLUMNS[: len(documents[0])] if documents else DOC_COLUMNS
        with self._writing(dim) as con:
            insert_rows(con, "documents", doc_columns, documents)
            insert_rows(con, "chunks", CHUNK_COLUMNS, chunks)
            insert_rows(con, "embeddings", VECTOR_COLUMNS, vector_rows)
        with self.session(read_only=False) as store:
            return store.rebuild_keyword_index()

    # -- ingestion reads --------------------------------------------------------------------
    def raw_item_ids(self, item_ids) -> set[str]:
        sql = f"SELECT item_id FROM raw_items WHERE {_in_list()}"
        return {r[0] for r in self._rows(sql, [list(item_ids)], "raw_items")}

    def staged_documents(self, item_ids) -> list[tuple]:
        sql = f"SELECT item_id, title, text, content_hash FROM staged_documents WHERE {_in_list()}"
        return self._rows(sql, [list(item_ids)], "staged_documents")

    def staged_chunks(self, item_ids) -> list[tuple]:
        sql = (
            f"SELECT chunk_id, item_id, text FROM staged_chunks WHERE {_in_list()} "
            "ORDER BY item_id, chunk_index"
        )
        return self._rows(sql, [list(item_ids)], "staged_chunks")

    def vectors(self, chunk_ids, fingerprint) -> dict[str, list[float]]:
        sql = (
            "SELECT chunk_id, embedding FROM embeddings WHERE fingerprint = ? "
            f"AND {_in_list('chunk_id')}"
        )
        return dict(self._rows(sql, [fingerprint, list(chunk_ids)], "embeddings"))

    def item_summaries(self, item_ids) -> list[tuple]:
        vectors = (
            "(SELECT count(*) FROM embeddings e WHERE e.item_id = d.item_id)"
            if self.has_embeddings()
            else "0"
        )
        sql = (
            "SELECT d.item_id, d.title, d.url, d.word_count, "
            " (SELECT count(*) FROM chunks c WHERE c.item_id = d.item_id), "
            f" {vectors}, "
            " (SELECT c.text FROM chunks c WHERE c.item_id = d.item_id AND c.chunk_index = 0) "
            f"FROM documents d WHERE d.{_in_list()}"
        )
        return self._rows(sql, [list(item_ids)], "documents")

    def item_errors(self, item_ids) -> list[tuple]:
        sql = f"SELECT item_id, stage, error FROM ingest_errors WHERE {_in_list()}"
        return self._rows(sql, [list(item_ids)], "ingest_errors")

    def urls(self, item_ids) -> dict[str, str]:
        sql = f"SELECT item_id, url FROM raw_items WHERE {_in_list()}"
        return dict(self._rows(sql, [list(item_ids)], "raw_items")) if item_ids else {}

    def graph_rows(self, item_ids) -> tuple[list[tuple], list[tuple]]:
        keys = [list(item_ids)]
        with self.session() as store, store._reading() as con:
            if con is None or not table_exists(con, "documents"):
                return [], []
            docs = con.execute(
                "SELECT d.item_id, d.url, d.title, d.content_hash, r.links FROM documents d "
                f"LEFT JOIN raw_items r USING (item_id) WHERE d.{_in_list()}",
                keys,
            ).fetchall()
            vectors = (
                "e.embedding FROM chunks c LEFT JOIN embeddings e USING (chunk_id)"
                if table_exists(con, "embeddings")
                else "NULL FROM chunks c"
            )
            chunk_rows = con.execute(
                f"SELECT c.item_id, c.chunk_id, c.chunk_index, c.text, {vectors} "
                f"WHERE c.{_in_list()} ORDER BY c.item_id, c.chunk_index",
                keys,
            ).fetchall()
        return docs, chunk_rows

    def ingested_files(self) -> dict[str, tuple[int, str, str]]:
        with self._reading() as con:
            return {} if con is None else read_ingested_files(con)

    # -- figures ----------------------------------------------------------------------------
    def table_counts(self) -> dict[str, int]:
        names = (*ITEM_TABLES, "ingest_errors")
        counts = dict.fromkeys(names, 0)
        with self._reading() as con:
            for name in names if con is not None else ():
                if table_exists(con, name):
                    counts[name] = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
        return counts

    def recent_errors(self, limit: int = 200) -> list[tuple]:
        sql = (
            "SELECT e.item_id, e.stage, r.url, e.error, e.run_id, e.occurred_at "
            "FROM ingest_errors e LEFT JOIN raw_items r USING (item_id) "
            "ORDER BY e.occurred_at DESC, e.item_id LIMIT ?"
        )
        return self._rows(sql, [limit], "ingest_errors")

    def metric_counts(self, model: str) -> dict:
        with self._reading() as con:
            if con is None:
                return {"items": {}, "rows": {}, "errors": {}, "items_with_model": 0}
            return metric_counts(con, model)

    def fingerprint_counts(self) -> dict[str, int]:
        with self._reading() as con:
            return {} if con is None else fingerprint_counts(con)

    def example_title(self) -> str | None:
        with self._reading() as con:
            return None if con is None else example_title(con)

    def has_embeddings(self) -> bool:
        with self._reading() as con:
            return con is not None and table_exists(con, "embeddings")

    def embedding_coverage(self) -> tuple[int, int, int, list[str]]:
        with self.session() as store, store._reading() as con:
            if con is None or not table_exists(con, "embeddings"):
                return 0, 0, 0, []
            missing, orphans, duplicates = con.execute(
                "SELECT (SELECT count(*) FROM chunks c ANTI JOIN embeddings e USING (chunk_id)),"
                " (SELECT count(*) FROM embeddings e ANTI JOIN chunks c USING (chunk_id)),"
                " (SELECT count(*) - count(DISTINCT chunk_id) FROM embeddings)"
            ).fetchone()
            sample = con.execute(
                "SELECT c.item_id FROM chunks c ANTI JOIN embeddings e USING (chunk_id) LIMIT 10"
            ).fetchall()
        return missing, orphans, duplicates, sorted({r[0] for r in sample})

    def vector_widths(self) -> list[tuple[int, str, int]]:
        sql = "SELECT len(embedding), model, count(*) FROM embeddings GROUP BY ALL"
        return self._rows(sql, None, "embeddings")

    def non_finite_vectors(self) -> int:
        sql = (
            "SELECT count(*) FROM embeddings "
            "WHERE list_bool_or(list_transform(embedding::FLOAT[], lambda x: NOT isfinite(x)))"
        )
        rows = self._rows(sql, None, "embeddings")
        return rows[0][0] if rows else 0

    # -- search -----------------------------------------------------------------------------
    def embeddings_dimension(self) -> int | None:
        with self._reading() as con:
            return None if con is None else embeddings_dimension(con)

    def vector_candidates(self, query, fingerprint, limit, url_prefix="", title="") -> list:
        with self._reading() as con:
            if con is None:
                return []
            score = self.vector_score(query)
            try:
                return vector_candidates(con, query, fingerprint, limit, url_prefix, title, score)
            except duckdb.CatalogException:
                return []  # no embeddings table yet (checked here, not before every search)

    def keyword_candidates(self, question, fingerprint, limit, url_prefix="", title="") -> list:
        with self._reading() as con:
            if con is None or not fts_index_exists(con):
                return []
            return keyword_candidates(con, question, fingerprint, limit, url_prefix, title)

    def keyword_index_current(self) -> bool:
        with self._reading() as con:
            if con is None:
                return False
            load_fts(con)
            return fts_is_current(con)

    def keyword_index_age_s(self) -> float | None:
        with self._reading() as con:
            return None if con is None else fts_age_s(con)

    def rebuild_keyword_index(self) -> float:
        with self.session(read_only=False) as store:
            return rebuild_fts_index(store._con)


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


# Re-exported for callers that build rows in the tables' column order.
__all__ = [
    "CHUNK_COLUMNS",
    "DOC_COLUMNS",
    "ITEM_TABLES",
    "RAW_COLUMNS",
    "STAGING_TABLES",
    "VECTOR_COLUMNS",
    "Candidate",
    "DuckDBStore",
    "MemoryStore",
    "StoreLockedError",
]
