"""The DuckDB store's SQL: schema, short write transactions, lock-tolerant connections, and
every statement the platform runs (functions over a connection; ``duckdb_impl.DuckDBStore``
is the Store on top of them).

DuckDB lets one process hold the file for writing and then no other process may
open it, not even to read. So every user of the file (ingestion runs, the CLI's
``status`` and ``search``) opens it briefly and retries while another holds it.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import duckdb
import numpy as np

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


# Schema questions go to DuckDB's catalog functions (duckdb_tables(), pragma_table_info(),
# duckdb_schemas()), not to information_schema, whose views cost 8-100 ms on a freshly opened
# file, paid by every search (docs/architecture.md, *Search*).
def table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether ``table`` exists (in any attached database, as information_schema lists)."""
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]
    ).fetchone()
    return bool(row and row[0])


def embeddings_dimension(con: duckdb.DuckDBPyConnection) -> int | None:
    """Width of the embeddings' FLOAT[n] column (of a stored vector where the column is a
    FLOAT[] list), or None when the table is absent or holds no vector to measure."""
    try:
        # pragma_table_info reads one table's entry: on a freshly opened file 14 ms against
        # 100-140 ms for duckdb_columns() or information_schema, which list every column.
        row = con.execute(
            "SELECT type FROM pragma_table_info('embeddings') WHERE name = 'embedding'"
        ).fetchone()
    except duckdb.CatalogException:
        return None  # no embeddings table (callers read outside a write transaction)
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


def insert_vectors(con: duckdb.DuckDBPyConnection, rows: Sequence[tuple]) -> None:
    """Insert embeddings rows (VECTOR_COLUMNS order, the vector last) through numpy scans.

    Vectors passed as Python list parameters go through one DuckDB value per float: 403
    vectors of 384 floats took 24 s on the loaded reference machine (0.2 s this way), and
    the publish of every sub-batch paid it. The flat float32 values are scanned as a column
    and folded back into one list per row; the table's column type (FLOAT[dim], or FLOAT[] on
    DuckLake) takes it by the usual implicit cast, so values are bit-identical."""
    if not rows:
        return
    matrix = np.asarray([r[-1] for r in rows], dtype=np.float32)
    n, dim = matrix.shape
    values = {
        "row_no": np.repeat(np.arange(n, dtype=np.int64), dim),
        "pos": np.tile(np.arange(dim, dtype=np.int64), n),
        "v": matrix.reshape(-1),
    }
    meta = {"row_no": np.arange(n, dtype=np.int64)} | {
        name: np.array([r[i] for r in rows], dtype=object)
        for i, name in enumerate(VECTOR_COLUMNS[:-1])
    }
    con.register("vector_values_scan", values)
    con.register("vector_rows_scan", meta)
    try:
        names = ", ".join(f"r.{name}" for name in VECTOR_COLUMNS[:-1])
        con.execute(
            f"INSERT INTO embeddings ({', '.join(VECTOR_COLUMNS)}) SELECT {names}, v.vec "
            "FROM vector_rows_scan r JOIN (SELECT row_no, list(v ORDER BY pos) AS vec "
            "FROM vector_values_scan GROUP BY row_no) v USING (row_no)"
        )
    finally:
        con.unregister("vector_values_scan")
        con.unregister("vector_rows_scan")


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
    insert_vectors(con, vector_rows)
    for table in STAGING_TABLES:
        delete_items(con, table, ids)
    chunks_changed(con)


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
# The index's (termid, docid) pairs in term order (rebuild_fts_index); an index built before
# it existed is read through the extension's own ``terms`` table.
POSTINGS = "postings_by_term"
STEMMER = "english"
FTS_STATE_DDL = """
CREATE TABLE IF NOT EXISTS fts_state (
    chunks BIGINT NOT NULL,
    checksum UBIGINT NOT NULL,
    built_at TIMESTAMPTZ DEFAULT current_timestamp,
    build_s DOUBLE
);
ALTER TABLE fts_state ADD COLUMN IF NOT EXISTS changes BIGINT;
"""
# One row per transaction that changed the chunks table (publish_items, delete_everywhere,
# load_rows), appended in that transaction: its row count is a signature of the chunks that
# costs no scan of them (the checksum of every chunk id took 9 ms per search at 100k chunks,
# 90 ms at 1M). Rows are only ever appended (appends never conflict between transactions; an
# updated counter row would).
CHUNK_CHANGES_DDL = """
CREATE TABLE IF NOT EXISTS chunk_changes (changed_at TIMESTAMPTZ);
"""
# The BM25 weight of each (term, chunk) pair of the index, in term order (rebuild_fts_index):
# a search sums its terms' weights; see BM25_TOP_SQL.
BM25_WEIGHTS = "bm25_by_term"


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


def chunks_changed(con: duckdb.DuckDBPyConnection) -> None:
    """Inside the caller's transaction that changes the chunks table: record the change (the
    keyword index built before it is stale from the commit on, see ``fts_is_current``)."""
    con.execute(CHUNK_CHANGES_DDL)
    # (No column default: a DuckLake catalog, which runs the same writes, takes none.)
    con.execute("INSERT INTO chunk_changes VALUES (current_timestamp)")


def fts_is_current(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether an fts index exists and was built from the chunks table as it is now.

    The index records the chunks' row count and the chunk_changes row count it was built at;
    every platform write of chunks appends to chunk_changes in its own transaction, so both
    counts are equal only while the chunks are as built (the row count also catches a change
    made outside the store's functions, e.g. by hand). One small read, no scan of the chunks.
    An index built before chunk_changes existed is compared by the checksum of every chunk id.
    """
    try:
        row = con.execute(
            "SELECT s.chunks, s.changes, (SELECT count(*) FROM chunks), "
            " (SELECT count(*) FROM chunk_changes), "
            " (SELECT count(*) FROM duckdb_schemas() WHERE schema_name = $schema) "
            "FROM fts_state s",
            {"schema": FTS_SCHEMA},
        ).fetchone()
    except (duckdb.CatalogException, duckdb.InvalidInputException):
        # No fts_state (never built) or no chunk_changes (an older file); DuckDB's Python
        # client raises the latter when a missing table's name matches a Python variable.
        row = None
    if row is not None and row[1] is not None:
        built_rows, built_changes, rows, changes, index = row
        return bool(index) and (built_rows, built_changes) == (rows, changes)
    if not table_exists(con, "fts_state") or not fts_index_exists(con):
        return False
    row = con.execute("SELECT chunks, checksum FROM fts_state").fetchone()
    return row is not None and (int(row[0]), int(row[1])) == chunks_signature(con)


def changes_logged(con: duckdb.DuckDBPyConnection) -> int | None:
    """Rows of chunk_changes (None while it does not exist)."""
    try:
        return int(con.execute("SELECT count(*) FROM chunk_changes").fetchone()[0])
    except duckdb.CatalogException:
        return None


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
        "SELECT count(*) FROM duckdb_schemas() WHERE schema_name = ?", [FTS_SCHEMA]
    ).fetchone()
    return bool(row and row[0])


def rebuild_fts_index(con: duckdb.DuckDBPyConnection) -> float:
    """(Re)build the BM25 index over chunk heading and text; returns the seconds it took."""
    started = time.monotonic()
    load_fts(con)
    con.execute(CHUNK_CHANGES_DDL)
    changes = changes_logged(con)
    signature = chunks_signature(con)
    # English stemming and stop words: both question sets are English documentation.
    con.execute(
        "PRAGMA create_fts_index('chunks', 'chunk_id', 'heading', 'text', "
        f"stemmer = '{STEMMER}', stopwords = 'english', overwrite = 1)"
    )
    # The index's terms table is in document order, so finding a term's postings reads all
    # of it; this table in term order lets a search read only the row groups of its terms,
    # and holds each pair's BM25 weight, so a search neither counts term frequencies nor
    # joins document lengths and document frequencies (all fixed until the next build).
    con.execute(f"CREATE OR REPLACE TABLE {FTS_SCHEMA}.{BM25_WEIGHTS} AS {BM25_WEIGHTS_SQL}")
    con.execute(f"DROP TABLE IF EXISTS {FTS_SCHEMA}.{POSTINGS}")  # superseded by the weights
    elapsed = time.monotonic() - started
    con.execute(FTS_STATE_DDL)
    con.execute("DELETE FROM fts_state")
    con.execute(
        "INSERT INTO fts_state (chunks, checksum, changes, build_s) VALUES (?, ?, ?, ?)",
        [signature[0], signature[1], changes, elapsed],
    )
    return elapsed


# The stemmer (the fts extension's ``stem``) lives in one in-memory DuckDB per process: the
# extension's LOAD verifies the 11.6 MB binary's signature, 40-120 ms that a LOAD into each
# freshly opened store file paid on every keyword search. The store file itself needs no
# extension to rank: its index is plain tables and macros (docs/architecture.md, *Search*).
_stemmer: duckdb.DuckDBPyConnection | None = None
_stemmer_lock = threading.Lock()


# Stems already computed, by word: a word's stem never changes, and a query through the
# stemmer's connection cost 6-15 ms a question on the shared machine (a dict lookup is free).
_stem_of: dict[str, str] = {}
STEMS_HELD = 100_000  # words; the dict is emptied when it would grow past this


def stems(words: Sequence[str]) -> list[str]:
    """The distinct stems of ``words`` as the keyword index stems them."""
    global _stemmer
    words = list(dict.fromkeys(words))
    if not words:
        return []
    with _stemmer_lock:  # one connection, used by one thread at a time
        found = {w: _stem_of[w] for w in words if w in _stem_of}
        new = [w for w in words if w not in found]
        if new:
            if _stemmer is None:
                con = duckdb.connect(":memory:")
                load_fts(con)
                _stemmer = con
            rows = _stemmer.execute(
                "SELECT w, stem(w, $stemmer) FROM (SELECT unnest($words) AS w)",
                {"words": new, "stemmer": STEMMER},
            ).fetchall()
            found.update(rows)
            if len(_stem_of) + len(rows) > STEMS_HELD:
                _stem_of.clear()
            _stem_of.update(rows)
    return list(dict.fromkeys(found[w] for w in words))


# BM25 as the fts extension's match_bm25 macro computes it (k1 = 1.2, b = 0.75, every field,
# disjunctive), over the question's terms only: the macro is evaluated for every chunk row,
# with the chunks' text carried through the join; this ranks the few (docid, score) pairs and
# reads chunk text for the winners alone. Same expression, same order of operations.
#
# Each (term, chunk) pair's summand depends only on the index (term frequency, document length
# and frequency, average length): rebuild_fts_index stores it per pair, in term order
# (BM25_WEIGHTS_SQL, the macro's expression), and a search sums its terms' weights per chunk
# (BM25_WEIGHTS_TOP_SQL). An index built before that table existed is ranked by BM25_TOP_SQL.
BM25_WEIGHTS_SQL = f"""
WITH term_tf AS (
    SELECT termid, docid, count_star() AS tf FROM {FTS_SCHEMA}.terms GROUP BY docid, termid
)
SELECT term_tf.termid, term_tf.docid,
       log(((((SELECT num_docs FROM {FTS_SCHEMA}.stats) - df) + 0.5) / (df + 0.5)) + 1)
       * ((tf * (1.2 + 1)) / (tf + (1.2 * ((1 - 0.75)
          + (0.75 * (len / (SELECT avgdl FROM {FTS_SCHEMA}.stats))))))) AS subscore
FROM term_tf
JOIN {FTS_SCHEMA}.docs docs ON term_tf.docid = docs.docid
JOIN {FTS_SCHEMA}.dict dict ON term_tf.termid = dict.termid
ORDER BY term_tf.termid, term_tf.docid
"""
# The best ``$limit`` chunks' (docid, score), and every chunk tied with the last of them (the
# order's tie-break is the chunk id, which only the few winners' names are read for).
BM25_WEIGHTS_TOP_SQL = f"""
WITH scores AS MATERIALIZED (
    SELECT docid, sum(subscore) AS score FROM {FTS_SCHEMA}.{BM25_WEIGHTS}
    WHERE termid IN ({{termids}}) GROUP BY docid
)
SELECT docid, score FROM scores
WHERE score >= (SELECT min(score) FROM (SELECT score FROM scores ORDER BY score DESC LIMIT $limit))
"""
BM25_TOP_SQL = f"""
WITH qterms AS (
    SELECT t.termid, t.docid FROM {FTS_SCHEMA}.{{postings}} t WHERE t.termid IN ({{termids}})
), term_tf AS (
    SELECT termid, docid, count_star() AS tf FROM qterms GROUP BY docid, termid
), subscores AS (
    SELECT docs.docid,
           log(((((SELECT num_docs FROM {FTS_SCHEMA}.stats) - df) + 0.5) / (df + 0.5)) + 1)
           * ((tf * (1.2 + 1)) / (tf + (1.2 * ((1 - 0.75)
              + (0.75 * (len / (SELECT avgdl FROM {FTS_SCHEMA}.stats))))))) AS subscore
    FROM term_tf
    JOIN {FTS_SCHEMA}.docs docs ON term_tf.docid = docs.docid
    JOIN {FTS_SCHEMA}.dict dict ON term_tf.termid = dict.termid
), scores AS (
    SELECT docid, sum(subscore) AS score FROM subscores GROUP BY docid
)
SELECT docs.name AS chunk_id, scores.score
FROM scores JOIN {FTS_SCHEMA}.docs docs ON docs.docid = scores.docid
ORDER BY scores.score DESC, chunk_id
LIMIT $limit
"""


# A search candidate's row, before its score: keyword, vector and in-memory ranks return
# the same fields (rag_app.search reads them by position), from chunks ``c`` and documents ``d``.
CANDIDATE_COLUMNS = (
    "c.chunk_id, c.item_id, d.title, d.url, c.heading, c.text, d.content_hash, c.chunk_index"
)


def question_terms(con: duckdb.DuckDBPyConnection, question: str) -> list[str]:
    """The question's terms as the keyword index holds them: split by the index's own
    ``tokenize`` macro (its ignore pattern), then stemmed."""
    rows = con.execute(
        f"SELECT DISTINCT unnest({FTS_SCHEMA}.tokenize($q))", {"q": question}
    ).fetchall()
    return stems([r[0] for r in rows if r[0]])


def question_termids(con: duckdb.DuckDBPyConnection, question: str) -> list[int]:
    """The keyword index's term ids of the question's terms (terms it does not hold drop)."""
    terms = question_terms(con, question)
    if not terms:
        return []
    rows = con.execute(
        f"SELECT termid FROM {FTS_SCHEMA}.dict WHERE term IN (SELECT unnest($terms))",
        {"terms": terms},
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


def keyword_candidates(
    con: duckdb.DuckDBPyConnection,
    question: str,
    fingerprint: str,
    limit: int,
    url_prefix: str = "",
    title: str = "",
    rows_of: Callable[[Sequence[tuple[str, float]]], list[tuple]] | None = None,
) -> list[tuple]:
    """Top ``limit`` chunks by BM25 for ``question`` among those with a vector of index
    ``fingerprint``: (chunk_id, item_id, title, url, heading, text, content_hash, chunk_index,
    score). ``rows_of`` gives the rows of (chunk_id, score) pairs instead of the joins (the
    vectors of ``fingerprint`` held in memory, unfiltered searches only).

    The best-scored chunk ids are ranked first, then joined to their rows; the ones dropped by
    the join (no vector of ``fingerprint``, filtered out, or gone since the index was built)
    are made up by asking for four times as many, until ``limit`` remain or none are left."""
    termids = question_termids(con, question)
    if not termids:
        return []
    depth = 2 * limit
    while True:
        top = bm25_top(con, termids, depth)
        if rows_of is not None:
            rows = rows_of(top)
        else:
            rows = _candidate_rows(con, top, fingerprint, url_prefix, title)
        if len(rows) >= limit or len(top) < depth:
            return rows[:limit]
        depth *= 4


def bm25_top(
    con: duckdb.DuckDBPyConnection, termids: Sequence[int], limit: int
) -> list[tuple[str, float]]:
    """The ``limit`` best (chunk_id, BM25 score) for the index's ``termids``, by score
    descending, then chunk id."""
    # Term ids go in as integer constants: a constant IN list lets the scan skip the row
    # groups of other terms by their min/max (a parameter list becomes a join, no skipping).
    consts = ", ".join(str(int(t)) for t in termids)
    try:
        scored = con.execute(BM25_WEIGHTS_TOP_SQL.format(termids=consts), {"limit": limit})
        scored = scored.fetchall()
    except duckdb.CatalogException:  # an index built before the weights table existed
        postings = POSTINGS if table_exists(con, POSTINGS) else "terms"
        sql = BM25_TOP_SQL.format(postings=postings, termids=consts)
        return con.execute(sql, {"limit": limit}).fetchall()
    if not scored:
        return []
    ids = [int(docid) for docid, _ in scored]
    if len(ids) <= NAMES_BY_CONSTANTS:
        # Integer constants again: the scan skips by min/max and filters as it reads (a
        # list parameter is joined to a scan of every docid: 22 against 6 ms at 100k chunks).
        where = f"docid IN ({', '.join(str(docid) for docid in ids)})"
        sql = f"SELECT docid, name FROM {FTS_SCHEMA}.docs WHERE {where}"
        names = dict(con.execute(sql).fetchall())
    else:  # a long tie: one join rather than a statement of thousands of constants
        names = dict(
            con.execute(
                f"SELECT docid, name FROM {FTS_SCHEMA}.docs WHERE docid IN (SELECT unnest($ids))",
                {"ids": ids},
            ).fetchall()
        )
    # Python orders str by code point, as DuckDB orders VARCHAR (by UTF-8 bytes).
    ranked = sorted(((names[docid], score) for docid, score in scored), key=_by_score)
    return ranked[:limit]


# Up to this many winners' names are asked for by a constant IN list (see bm25_top).
NAMES_BY_CONSTANTS = 2000


def _by_score(pair: tuple[str, float]) -> tuple[float, str]:
    return -pair[1], pair[0]


def _candidate_rows(
    con: duckdb.DuckDBPyConnection,
    scored: Sequence[tuple[str, float]],
    fingerprint: str,
    url_prefix: str = "",
    title: str = "",
) -> list[tuple]:
    """The candidate rows of ``scored`` (chunk_id, score) pairs, in their order, keeping those
    with a chunk, a document, a vector of ``fingerprint`` and the filters."""
    if not scored:
        return []
    ids = [chunk_id for chunk_id, _ in scored]
    # The few ids drive the joins (a table of them, not an IN filter over chunks: measured
    # 48 against 68 ms on a freshly opened 100k-chunk file).
    found = con.execute(
        f"""
        SELECT {CANDIDATE_COLUMNS}
        FROM (SELECT unnest($ids) AS chunk_id) top
        JOIN chunks c USING (chunk_id) JOIN documents d ON d.item_id = c.item_id
        JOIN embeddings e ON e.chunk_id = c.chunk_id AND e.fingerprint = $fingerprint
        WHERE {_filters_sql()}
        """,
        {"ids": ids, "prefix": url_prefix, "title": title, "fingerprint": fingerprint},
    ).fetchall()
    by_id = {row[0]: row for row in found}
    return [(*by_id[cid], score) for cid, score in scored if cid in by_id]


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
        SELECT {CANDIDATE_COLUMNS}, top.score
        FROM top JOIN chunks c USING (chunk_id) JOIN documents d ON d.item_id = c.item_id
        ORDER BY top.score DESC, c.chunk_id
        """,
        {"fingerprint": fingerprint, "limit": limit}
        | ({"prefix": url_prefix, "title": title} if filtered else {}),
    ).fetchall()


def vector_signature(con: duckdb.DuckDBPyConnection, fingerprint: str) -> tuple:
    """A signature of the vectors of ``fingerprint`` (their count first) that every publish
    or delete changes, so an in-process copy of the vectors (vector_cache) is used only while
    it still matches: (count, "log", rows of chunk_changes, rows of embeddings), where every
    platform write of vectors appends to chunk_changes (see ``chunks_changed``) in its
    transaction; one small read instead of the checksum of every vector's chunk and row id
    (5 ms a search at 100k vectors, ten times that at 1M), which a file without the log
    still gets: (count, checksum)."""
    try:
        row = con.execute(
            "SELECT count(*) FILTER (WHERE fingerprint = $fingerprint), count(*), "
            " (SELECT count(*) FROM chunk_changes) FROM embeddings",
            {"fingerprint": fingerprint},
        ).fetchone()
        return int(row[0]), "log", int(row[2]), int(row[1])
    except (duckdb.CatalogException, duckdb.InvalidInputException):
        pass  # no chunk_changes yet (see fts_is_current for the second exception)
    row = con.execute(
        "SELECT count(*), coalesce(bit_xor(hash(chunk_id, rowid)), 0) FROM embeddings "
        "WHERE fingerprint = $fingerprint",
        {"fingerprint": fingerprint},
    ).fetchone()
    return int(row[0]), int(row[1])


def load_vectors(
    con: duckdb.DuckDBPyConnection, fingerprint: str, dim: int
) -> tuple[list[str], np.ndarray, dict[str, tuple]]:
    """The chunk ids and the (n, dim) float32 matrix of the vectors of ``fingerprint``, in
    one order (both scans return the table's order, DuckDB preserving insertion order; each
    row's first component is compared to be sure, ValueError if not), and the candidate row
    (chunk_id, item_id, title, url, heading, text, content_hash, chunk_index) of each of
    those chunks that has a chunk and a document row.

    The rows may be held with the vectors: a page's document and chunks change only with
    its vectors (``publish_items`` replaces the three together, deletes remove all three),
    and replaced vectors change ``vector_signature``."""
    params = {"fingerprint": fingerprint}
    where = "FROM embeddings WHERE fingerprint = $fingerprint"
    heads = con.execute(f"SELECT chunk_id, embedding[1] AS head {where}", params).fetchnumpy()
    # unnest flattens the arrays into one float column: numpy receives it without a Python
    # object per vector (fetchnumpy of the array column is several times slower).
    flat = con.execute(f"SELECT unnest(embedding) AS v {where}", params).fetchnumpy()["v"]
    if np.ma.is_masked(flat) or np.ma.is_masked(heads["head"]):
        raise ValueError("a stored vector has NULL components")  # (a NaN stored as NULL)
    ids = [str(cid) for cid in heads["chunk_id"]]
    matrix = np.ascontiguousarray(flat, dtype=np.float32).reshape(len(ids), dim)
    if not np.array_equal(matrix[:, 0], np.asarray(heads["head"], dtype=np.float32)):
        raise ValueError("the vectors came back in another order than their chunk ids")
    found = con.execute(
        f"SELECT {CANDIDATE_COLUMNS} FROM embeddings e JOIN chunks c USING (chunk_id) "
        "JOIN documents d ON d.item_id = c.item_id WHERE e.fingerprint = $fingerprint",
        params,
    ).fetchall()
    return ids, matrix, {row[0]: row for row in found}


def query_vector(con: duckdb.DuckDBPyConnection, query: Sequence[float]) -> np.ndarray:
    """``query`` as the SQL ranking sees it: the constant of ``array_score`` cast to FLOAT[n]
    by DuckDB (its decimal literals do not always round to the float32 a numpy cast gives)."""
    row = con.execute(f"SELECT {vector_literal(query)}::FLOAT[{len(query)}]").fetchone()
    return np.asarray(row[0], dtype=np.float32)


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


# -- the reads and writes behind the Store's methods (duckdb_impl.DuckDBStore) ---------------


def store_stage(
    con: duckdb.DuckDBPyConnection,
    stage: str,
    table: str,
    batch: Sequence[str],
    rows: Sequence[tuple],
    stored_ids: Sequence[str],
    errors: dict[str, str],
    run_id: str,
) -> None:
    """Inside the caller's transaction: the rows of ``stored_ids`` in ``table`` become ``rows``
    and the stage's errors of the whole ``batch`` become ``errors``. Items that failed keep
    their last good rows, so a broken re-fetch never loses stored data."""
    delete_items(con, table, stored_ids)
    insert_rows(con, table, columns(table), rows)
    replace_errors(con, stage, batch, errors, run_id)


def delete_everywhere(con: duckdb.DuckDBPyConnection, item_ids: Sequence[str]) -> None:
    """Inside the caller's transaction: the items' rows of every table."""
    for table in (*ITEM_TABLES, *STAGING_TABLES, "ingested_files", "ingest_errors"):
        delete_items(con, table, list(item_ids))
    chunks_changed(con)


def load_rows(
    con: duckdb.DuckDBPyConnection,
    documents: Sequence[tuple],
    chunks: Sequence[tuple],
    vector_rows: Sequence[tuple],
) -> None:
    """Bulk insert into a fresh store; document rows may stop after any leading columns."""
    doc_columns = DOC_COLUMNS[: len(documents[0])] if documents else DOC_COLUMNS
    insert_rows(con, "documents", doc_columns, documents)
    insert_rows(con, "chunks", CHUNK_COLUMNS, chunks)
    insert_rows(con, "embeddings", VECTOR_COLUMNS, vector_rows)
    chunks_changed(con)


def _select(
    con: duckdb.DuckDBPyConnection, table: str, sql: str, params: Sequence | None = None
) -> list:
    """Rows of ``sql``, or none while ``table`` does not exist yet."""
    if not table_exists(con, table):
        return []
    return con.execute(sql, list(params or [])).fetchall()


def raw_item_ids(con: duckdb.DuckDBPyConnection, item_ids: Sequence[str]) -> set[str]:
    sql = f"SELECT item_id FROM raw_items WHERE {_in_list()}"
    return {r[0] for r in _select(con, "raw_items", sql, [list(item_ids)])}


def staged_documents(con: duckdb.DuckDBPyConnection, item_ids: Sequence[str]) -> list[tuple]:
    sql = f"SELECT item_id, title, text, content_hash FROM staged_documents WHERE {_in_list()}"
    return _select(con, "staged_documents", sql, [list(item_ids)])


def staged_chunks(con: duckdb.DuckDBPyConnection, item_ids: Sequence[str]) -> list[tuple]:
    sql = (
        f"SELECT chunk_id, item_id, text FROM staged_chunks WHERE {_in_list()} "
        "ORDER BY item_id, chunk_index"
    )
    return _select(con, "staged_chunks", sql, [list(item_ids)])


def stored_vectors(
    con: duckdb.DuckDBPyConnection, chunk_ids: Sequence[str], fingerprint: str
) -> dict[str, list[float]]:
    sql = (
        "SELECT chunk_id, embedding FROM embeddings WHERE fingerprint = ? "
        f"AND {_in_list('chunk_id')}"
    )
    return dict(_select(con, "embeddings", sql, [fingerprint, list(chunk_ids)]))


def item_summaries(con: duckdb.DuckDBPyConnection, item_ids: Sequence[str]) -> list[tuple]:
    vectors = (
        "(SELECT count(*) FROM embeddings e WHERE e.item_id = d.item_id)"
        if table_exists(con, "embeddings")
        else "0"
    )
    sql = (
        "SELECT d.item_id, d.title, d.url, d.word_count, "
        " (SELECT count(*) FROM chunks c WHERE c.item_id = d.item_id), "
        f" {vectors}, "
        " (SELECT c.text FROM chunks c WHERE c.item_id = d.item_id AND c.chunk_index = 0) "
        f"FROM documents d WHERE d.{_in_list()}"
    )
    return _select(con, "documents", sql, [list(item_ids)])


def item_errors(con: duckdb.DuckDBPyConnection, item_ids: Sequence[str]) -> list[tuple]:
    sql = f"SELECT item_id, stage, error FROM ingest_errors WHERE {_in_list()}"
    return _select(con, "ingest_errors", sql, [list(item_ids)])


def item_urls(con: duckdb.DuckDBPyConnection, item_ids: Sequence[str]) -> dict[str, str]:
    sql = f"SELECT item_id, url FROM raw_items WHERE {_in_list()}"
    return dict(_select(con, "raw_items", sql, [list(item_ids)]))


def graph_rows(
    con: duckdb.DuckDBPyConnection, item_ids: Sequence[str]
) -> tuple[list[tuple], list[tuple]]:
    keys = [list(item_ids)]
    if not table_exists(con, "documents"):
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


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows of each item table and of ingest_errors (0 where absent)."""
    counts = {}
    for name in (*ITEM_TABLES, "ingest_errors"):
        rows = _select(con, name, f"SELECT count(*) FROM {name}")
        counts[name] = rows[0][0] if rows else 0
    return counts


def recent_errors(con: duckdb.DuckDBPyConnection, limit: int) -> list[tuple]:
    sql = (
        "SELECT e.item_id, e.stage, r.url, e.error, e.run_id, e.occurred_at "
        "FROM ingest_errors e LEFT JOIN raw_items r USING (item_id) "
        "ORDER BY e.occurred_at DESC, e.item_id LIMIT ?"
    )
    return _select(con, "ingest_errors", sql, [limit])


def embedding_coverage(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int, list[str]]:
    if not table_exists(con, "embeddings"):
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


def vector_widths(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str, int]]:
    sql = "SELECT len(embedding), model, count(*) FROM embeddings GROUP BY ALL"
    return _select(con, "embeddings", sql)


def non_finite_vectors(con: duckdb.DuckDBPyConnection) -> int:
    # A NaN reaches DuckDB as NULL (through parameters), so a NULL component counts too.
    sql = (
        "SELECT count(*) FROM embeddings WHERE list_bool_or(list_transform("
        "embedding::FLOAT[], lambda x: x IS NULL OR NOT isfinite(x)))"
    )
    rows = _select(con, "embeddings", sql)
    return rows[0][0] if rows else 0


# Re-exported for callers that build rows in the tables' column order.
__all__ = [
    "CHUNK_COLUMNS",
    "DOC_COLUMNS",
    "ITEM_TABLES",
    "RAW_COLUMNS",
    "STAGING_TABLES",
    "VECTOR_COLUMNS",
    "Candidate",
    "StoreLockedError",
]
