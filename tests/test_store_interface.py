"""The Store interface: all SQL lives in rag_core/stores, and each Store method does what the
platform asks of it (checked on the in-memory implementation, no file, no model)."""

from __future__ import annotations

import ast
import inspect
import math
import re
from pathlib import Path

import duckdb
import pytest

from rag_core import stores
from rag_core.stores import base, duckdb_store

ROOT = Path(__file__).resolve().parents[1]
# Statements against tables; upper case, as the project writes its SQL (prose says "select").
SQL = re.compile(
    r"\b(SELECT\b.*\bFROM|INSERT\s+INTO|DELETE\s+FROM|UPDATE\s+\w+\s+SET|CREATE\s+TABLE|"
    r"ALTER\s+TABLE|DROP\s+TABLE|PRAGMA\s+create_fts_index)",
    re.S,
)
# bench/ may measure the database itself; tests build their fixtures as they like; the demo
# site's pages are prose about data pipelines (their SQL examples are page text).
OUTSIDE = ("tests", "bench", ".venv", "data", "demo_site", "rag_core/stores")


def project_modules() -> list[Path]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith(OUTSIDE) and not rel.startswith("."):
            found.append(path)
    return found


def sql_strings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string literal (f-string parts included) that holds SQL."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        (node.lineno, node.value[:80])
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and SQL.search(node.value)
    ]


def test_the_sql_detector_sees_sql_and_not_prose():
    assert SQL.search("SELECT item_id FROM raw_items WHERE x")
    assert SQL.search("DELETE FROM documents")
    assert not SQL.search("select the best chunks from the index")


def test_no_module_outside_the_stores_writes_sql():
    modules = project_modules()
    assert any(p.name == "ingest.py" for p in modules)  # the scan really covers the assets
    offenders = {
        path.relative_to(ROOT).as_posix(): hits
        for path in modules
        if (hits := sql_strings(path))
    }
    assert offenders == {}, f"SQL outside rag_core/stores: {offenders}"
    # Within the stores, the SQL is in duckdb_store.py; the Store class only calls it.
    assert sql_strings(ROOT / "rag_core" / "stores" / "duckdb_impl.py") == []
    assert len(sql_strings(ROOT / "rag_core" / "stores" / "duckdb_store.py")) > 20


def test_no_module_outside_the_stores_imports_duckdb():
    offenders = []
    for path in project_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names] if isinstance(node, ast.Import)
                else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            )  # fmt: skip
            if any(n == "duckdb" or n.startswith("duckdb.") for n in names):
                offenders.append(path.relative_to(ROOT).as_posix())
    assert offenders == []


def test_each_table_is_declared_once_and_staging_reuses_it():
    assert stores.columns("staged_documents") == stores.columns("documents")
    assert stores.columns("staged_chunks") == stores.columns("chunks")
    assert stores.VECTOR_COLUMNS == ("chunk_id", "item_id", "model", "fingerprint", "embedding")
    # The DuckDB implementation builds its DDL from the declarations, with its vector type.
    assert "embedding FLOAT[4] NOT NULL" in duckdb_store.table_ddl("embeddings", "FLOAT[4]")
    source = inspect.getsource(duckdb_store)
    assert source.count("content_hash VARCHAR") == 0  # no second copy of the columns
    assert "CREATE TABLE IF NOT EXISTS staged_chunks" in duckdb_store.table_ddl("staged_chunks")


def test_the_duckdb_store_implements_every_method():
    abstract = set(base.Store.__abstractmethods__)
    assert {"publish", "vector_candidates", "delete_items", "ingested_files"} <= abstract
    assert not stores.DuckDBStore.__abstractmethods__
    assert isinstance(stores.store_at("/nonexistent/x.duckdb"), stores.Store)


# -- the Store's methods on the in-memory implementation ------------------------------------

DIM = 4


def raw(key):
    return (key, f"http://s/{key}", None, 200, "text/html", key.upper(), "", 10, False,
            [f"http://s/{key}/next"], f"/raw/{key}.json")  # fmt: skip


def doc(key, words=10):
    return (key, f"http://s/{key}", f"Title {key}", f"text of {key}", f"h-{key}", words, [], "")


def chunk(key, i, text=None):
    return (f"{key}-{i}", key, i, "Heading", text or f"chunk {i} of {key}", 5, f"h-{key}")


def vec(key, i, v, fp="fp1"):
    return (f"{key}-{i}", key, "model", fp, v)


@pytest.fixture
def store():
    memory = stores.MemoryStore()
    yield memory
    memory.close()


def ingest(store, key, vectors, fp="fp1", words=10):
    """One item through every stage, as the assets call the store."""
    store.mark_files_started({key: 111})
    store.store_raw_items([key], [raw(key)], {}, "run")
    store.stage_documents([key], [doc(key, words)], {}, "run")
    chunks = [chunk(key, i) for i in range(len(vectors))]
    store.stage_chunks([key], chunks, {}, "run")
    store.publish([key], [vec(key, i, v, fp) for i, v in enumerate(vectors)], DIM)
    store.set_files_state([key], "stored", fp)


def test_memory_store_starts_empty(store):
    assert store.table_counts() == dict.fromkeys(
        ("raw_items", "documents", "chunks", "embeddings", "ingest_errors"), 0
    )
    assert not store.has_embeddings()
    assert store.ingested_files() == {}
    assert store.example_title() is None
    assert store.vector_candidates([1, 0, 0, 0], "fp1", 3) == []


def test_staging_is_invisible_until_publish(store):
    store.store_raw_items(["a"], [raw("a")], {}, "run")
    store.stage_documents(["a"], [doc("a")], {}, "run")
    store.stage_chunks(["a"], [chunk("a", 0), chunk("a", 1)], {}, "run")
    assert store.table_counts()["documents"] == 0 and store.table_counts()["chunks"] == 0
    assert store.staged_documents(["a"]) == [("a", "Title a", "text of a", "h-a")]
    assert [r[0] for r in store.staged_chunks(["a"])] == ["a-0", "a-1"]
    store.publish(["a"], [vec("a", 0, [1, 0, 0, 0]), vec("a", 1, [0, 1, 0, 0])], DIM)
    counts = store.table_counts()
    assert (counts["documents"], counts["chunks"], counts["embeddings"]) == (1, 2, 2)
    assert store.staged_documents(["a"]) == [] and store.staged_chunks(["a"]) == []
    assert store.item_summaries(["a"]) == [
        ("a", "Title a", "http://s/a", 10, 2, 2, "chunk 0 of a")
    ]


def test_republish_replaces_an_items_rows_whole(store):
    ingest(store, "a", [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    ingest(store, "a", [[1, 0, 0, 0]])
    counts = store.table_counts()
    assert (counts["documents"], counts["chunks"], counts["embeddings"]) == (1, 1, 1)
    assert {k: list(v) for k, v in store.vectors(["a-0", "a-1"], "fp1").items()} == {
        "a-0": [1.0, 0.0, 0.0, 0.0]
    }
    assert store.vectors(["a-0"], "other") == {}


def test_errors_are_replaced_per_stage_and_cleared_when_fixed(store):
    store.store_raw_items(["a", "b"], [raw("a")], {"b": "broken file"}, "r1")
    store.record_errors("chunks", ["a"], {"a": "x" * 5000}, "r1")
    errors = sorted(store.item_errors(["a", "b"]))
    assert errors[0][:2] == ("a", "chunks") and len(errors[0][2]) == 2000  # capped
    assert errors[1] == ("b", "raw_items", "broken file")
    assert store.recent_errors()[0][0] in {"a", "b"}
    store.store_raw_items(["b"], [raw("b")], {}, "r2")
    store.record_errors("chunks", ["a"], {}, "r2")
    assert store.item_errors(["a", "b"]) == []
    assert store.raw_item_ids(["a", "b", "c"]) == {"a", "b"}
    assert store.urls(["a"]) == {"a": "http://s/a"}


def test_file_states_and_given_up(store):
    ingest(store, "a", [[1, 0, 0, 0]])
    store.mark_files_started({"b": 222})
    store.record_given_up({"c": 333}, "gave up", "fp1")
    store.record_given_up({"c": 333}, "gave up", "fp1")
    assert store.ingested_files() == {
        "a": (111, "stored", "fp1"),
        "b": (222, "started", None),
        "c": (333, "error", "fp1"),
    }
    assert store.item_errors(["c"]) == [("c", "ingest", "gave up")]


def test_delete_items_removes_a_page_from_every_table(store):
    ingest(store, "a", [[1, 0, 0, 0]])
    ingest(store, "b", [[0, 1, 0, 0]])
    store.stage_documents(["a"], [doc("a")], {}, "run")
    store.record_errors("documents", ["a"], {"a": "old"}, "run")
    store.delete_items(["a"])
    assert store.table_counts() == {
        "raw_items": 1, "documents": 1, "chunks": 1, "embeddings": 1, "ingest_errors": 0
    }  # fmt: skip
    assert store.staged_documents(["a"]) == [] and set(store.ingested_files()) == {"b"}


def test_figures_for_status_metrics_and_checks(store):
    ingest(store, "a", [[1, 0, 0, 0], [0, 1, 0, 0]], words=50)
    ingest(store, "b", [[0, 0, 1, 0]], fp="fp2", words=5)
    assert store.fingerprint_counts() == {"fp1": 1, "fp2": 1}
    assert store.example_title() == "Title a"  # the longest document
    assert store.embedding_coverage() == (0, 0, 0, [])
    assert store.vector_widths() == [(DIM, "model", 3)]
    assert store.non_finite_vectors() == 0
    metrics = store.metric_counts("model")
    assert metrics["rows"]["chunks"] == 3 and metrics["items"]["embeddings"] == 2
    assert metrics["items_with_model"] == 2
    # A chunk without a vector, and an infinite vector: the checks' figures see both.
    # (A Python NaN arrives as NULL through DuckDB's parameters; infinity stays infinite.)
    store.stage_documents(["c"], [doc("c")], {}, "run")
    store.stage_chunks(["c"], [chunk("c", 0)], {}, "run")
    store.publish(["c"], [vec("c", 0, [math.inf, 0, 0, 0])], DIM)
    store.stage_chunks(["a"], [chunk("a", 0), chunk("a", 1), chunk("a", 2)], {}, "run")
    store.publish(["a"], [vec("a", 0, [1, 0, 0, 0]), vec("a", 1, [0, 1, 0, 0])], DIM)
    missing, orphans, duplicates, items = store.embedding_coverage()
    assert (missing, orphans, duplicates, items) == (1, 0, 0, ["a"])
    assert store.non_finite_vectors() == 1
    # A NaN vector (a broken model or dtype) is stored with NULL components: still counted.
    store.stage_documents(["d"], [doc("d")], {}, "run")
    store.stage_chunks(["d"], [chunk("d", 0)], {}, "run")
    store.publish(["d"], [vec("d", 0, [math.nan, 0, 0, 0])], DIM)
    assert store.non_finite_vectors() == 2


def test_vector_and_keyword_candidates(store):
    ingest(store, "a", [[1, 0, 0, 0], [0, 1, 0, 0]])
    ingest(store, "b", [[0.9, 0.1, 0, 0]], fp="old")
    assert store.embeddings_dimension() == DIM
    top = store.vector_candidates([1, 0, 0, 0], "fp1", 5)
    assert [r[0] for r in top] == ["a-0", "a-1"]  # b is under another fingerprint
    assert top[0][8] == pytest.approx(1.0)
    assert store.vector_candidates([1, 0, 0, 0], "fp1", 5, url_prefix="http://s/b") == []
    assert store.keyword_candidates("chunk", "fp1", 5) == []  # no keyword index yet
    assert not store.keyword_index_current() and store.keyword_index_age_s() is None
    assert store.rebuild_keyword_index() >= 0
    assert store.keyword_index_current() and store.keyword_index_age_s() >= 0
    hits = store.keyword_candidates("chunk", "fp1", 5)
    assert {r[0] for r in hits} == {"a-0", "a-1"}
    ingest(store, "c", [[0, 0, 1, 0]])
    assert not store.keyword_index_current()  # chunks changed since the build


def test_graph_rows_and_sessions(store):
    ingest(store, "a", [[1, 0, 0, 0], [0, 1, 0, 0]])
    with store.session() as reader:
        docs, chunk_rows = reader.graph_rows(["a", "gone"])
        assert reader.has_embeddings()
    assert docs == [("a", "http://s/a", "Title a", "h-a", ["http://s/a/next"])]
    assert [(r[0], r[1], r[2]) for r in chunk_rows] == [("a", "a-0", 0), ("a", "a-1", 1)]
    assert list(chunk_rows[0][4]) == [1.0, 0.0, 0.0, 0.0]


def test_load_index_builds_a_searchable_store(store):
    took = store.load_index(
        [("a", "http://s/a", "A", "text", "h")],
        [chunk("a", 0, "installer for windows")],
        [vec("a", 0, [0, 0, 0, 1])],
        DIM,
    )
    assert took >= 0 and store.keyword_index_current()
    assert [r[0] for r in store.keyword_candidates("installer", "fp1", 3)] == ["a-0"]


def test_a_file_store_reads_nothing_before_it_exists_and_keeps_rows(tmp_path):
    path = tmp_path / "sub" / "rag.duckdb"
    store = stores.store_at(path)
    assert not store.exists() and store.table_counts()["chunks"] == 0
    assert store.vector_candidates([1, 0, 0, 0], "fp1", 3) == []
    ingest(store, "a", [[1, 0, 0, 0]])
    assert stores.store_at(path).table_counts()["embeddings"] == 1
    with pytest.raises(ValueError, match="DUCKDB_PATH"):
        store.publish(["a"], [vec("a", 0, [1.0] * 8)], 8)


def test_the_vector_type_is_an_override_point(tmp_path):
    class ListVectors(stores.DuckDBStore):
        """As a store without fixed-width arrays keeps them (FLOAT[])."""

        def vector_type(self, dim: int) -> str:
            return "FLOAT[]"

        def vector_score(self, query) -> str:
            return f"list_cosine_similarity(e.embedding, {duckdb_store.vector_literal(query)})"

    store = ListVectors(tmp_path / "rag.duckdb")
    ingest(store, "a", [[1, 0, 0, 0]])
    with duckdb.connect(str(tmp_path / "rag.duckdb"), read_only=True) as con:
        kind = con.execute(
            "SELECT data_type FROM information_schema.columns WHERE column_name = 'embedding'"
        ).fetchone()[0]
    assert kind == "FLOAT[]"
    assert store.embeddings_dimension() == DIM  # measured from a stored vector
    assert [r[0] for r in store.vector_candidates([1, 0, 0, 0], "fp1", 3)] == ["a-0"]


def test_the_readmes_schema_table_lists_the_declared_columns():
    readme = (ROOT / "README.md").read_text()
    for table in ("raw_items", "documents", "chunks", "embeddings", "ingest_errors"):
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{table}` |"))
        missing = [c for c in stores.columns(table) if f"`{c}" not in row]
        assert missing == [], f"README's {table} row lacks {missing}"


def test_a_registered_store_serves_every_caller_of_its_path(tmp_path):
    """The seam a second implementation plugs into: status, search and the resource all get
    the registered store for DUCKDB_PATH (here the in-memory one; no file is created)."""
    from rag_app.status import index_coverage, table_counts
    from resources.duckdb_store import DuckDBStore

    path = tmp_path / "lake" / "rag.duckdb"
    memory = stores.MemoryStore()
    stores.register(path, lambda timeout: memory)
    try:
        ingest(memory, "a", [[1, 0, 0, 0]])
        assert table_counts(path)["embeddings"] == 1
        assert index_coverage(path, "fp1", 1)["pages_current"] == 1
        assert DuckDBStore(path=str(path)).get_store() is memory
    finally:
        stores.unregister(path)
        memory.close()
    assert not path.exists()
    assert isinstance(stores.store_at(path), stores.DuckDBStore)


def test_every_change_of_the_chunks_makes_the_keyword_index_stale(store):
    """The keyword index's freshness is read from a change log the writers append to (no scan
    of the chunks): every write of published chunks must make it stale, including a page
    re-published with as many chunks under the same ids (a count would not see it), and
    writes that leave the published chunks alone must not (no needless rebuild)."""

    def rebuilt():
        store.rebuild_keyword_index()
        assert store.keyword_index_current()

    ingest(store, "a", [[1, 0, 0, 0], [0, 1, 0, 0]])
    rebuilt()
    for untouched in (
        lambda: store.stage_documents(["a"], [doc("a")], {}, "run"),
        lambda: store.stage_chunks(["a"], [chunk("a", 0, "staged only")], {}, "run"),
        lambda: store.record_errors("documents", ["a"], {"a": "x"}, "run"),
        lambda: store.set_files_state(["a"], "stored", "fp1"),
    ):
        untouched()
        assert store.keyword_index_current()
    store.stage_documents(["a"], [doc("a")], {}, "run")
    store.stage_chunks(["a"], [chunk("a", i, f"lumen {i}") for i in range(2)], {}, "run")
    store.publish(["a"], [vec("a", i, [1, 0, 0, 0]) for i in range(2)], DIM)
    assert not store.keyword_index_current()  # same ids, same count, new text
    rebuilt()
    assert [r[0] for r in store.keyword_candidates("lumen", "fp1", 5)] == ["a-0", "a-1"]
    ingest(store, "b", [[0, 0, 1, 0]])
    assert not store.keyword_index_current()
    rebuilt()
    store.delete_items(["b"])
    assert not store.keyword_index_current()
    rebuilt()
    store.load_index([doc("c")], [chunk("c", 0)], [vec("c", 0, [0, 0, 0, 1])], DIM)
    assert store.keyword_index_current()  # load_index rebuilds
    with store.raw_connection(read_only=False) as con:
        con.execute("DELETE FROM chunks WHERE chunk_id = 'c-0'")  # by hand: the count sees it
    assert not store.keyword_index_current()


def test_an_index_built_before_the_change_log_is_checked_by_its_checksum(store):
    ingest(store, "a", [[1, 0, 0, 0]])
    store.rebuild_keyword_index()
    with store.raw_connection(read_only=False) as con:
        con.execute("UPDATE fts_state SET changes = NULL")  # as an older build left it
        con.execute("DROP TABLE chunk_changes")
    assert store.keyword_index_current()
    with store.raw_connection(read_only=False) as con:
        con.execute("INSERT INTO chunks SELECT * REPLACE ('a-9' AS chunk_id) FROM chunks")
    assert not store.keyword_index_current()


def test_every_write_of_vectors_changes_their_signature(store):
    """The in-process vector copy (vector_cache) is used only while the signature read in the
    search's connection matches: every publish or delete must change it, a re-publish of
    the same ids and count too; other writes must not (the copy would be reloaded)."""

    def signature():
        with store.raw_connection() as con:
            return duckdb_store.vector_signature(con, "fp1")

    ingest(store, "a", [[1, 0, 0, 0], [0, 1, 0, 0]])
    seen = [signature()]
    store.record_errors("documents", ["a"], {"a": "x"}, "run")
    store.set_files_state(["a"], "stored", "fp1")
    assert signature() == seen[-1]
    store.stage_documents(["a"], [doc("a")], {}, "run")
    store.stage_chunks(["a"], [chunk("a", i) for i in range(2)], {}, "run")
    store.publish(["a"], [vec("a", i, [0, 0, 1, 0]) for i in range(2)], DIM)
    seen.append(signature())
    ingest(store, "b", [[0, 0, 1, 0]], fp="other")  # another fingerprint's vectors
    seen.append(signature())
    store.delete_items(["b"])
    seen.append(signature())
    assert len(set(seen)) == len(seen) and seen[-1][0] == 2
