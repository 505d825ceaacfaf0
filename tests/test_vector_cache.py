"""The in-process copy of the vectors (rag_core/stores/vector_cache.py) ranks exactly as the
SQL does, never mixes fingerprints, and sees what is published after it was taken; the
keyword ranking over the index's tables gives the fts extension's own BM25."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from rag_core import stores
from rag_core.stores import duckdb_store as sql
from rag_core.stores import vector_cache
from tests.test_store_interface import chunk, doc

DIM = 16


@pytest.fixture(autouse=True)
def fresh_cache():
    vector_cache.CACHE.clear()
    yield
    vector_cache.CACHE.clear()


def duckdb_cosines(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    n, dim = matrix.shape
    with duckdb.connect() as con:
        # Through a numpy scan: as Python list parameters the floats take minutes.
        flat = {"i": np.repeat(np.arange(n), dim), "pos": np.tile(np.arange(dim), n),
                "v": matrix.reshape(-1)}  # fmt: skip
        con.register("flat", flat)
        con.execute(
            f"CREATE TABLE e AS SELECT i, list(v ORDER BY pos)::FLOAT[{dim}] AS embedding "
            "FROM flat GROUP BY i"
        )
        score = sql.array_score(query.tolist())
        rows = con.execute(f"SELECT {score} FROM e ORDER BY i").fetchall()
    return np.array([r[0] for r in rows])


@pytest.mark.parametrize("dim", [4, 384])
def test_exact_cosine_is_duckdbs_bit_for_bit(dim):
    rng = np.random.default_rng(dim)
    matrix = (rng.random((500, dim), dtype=np.float32) - 0.5).astype(np.float32)
    matrix[:250] /= np.linalg.norm(matrix[:250], axis=1, keepdims=True)  # unit and not
    query = rng.standard_normal(dim).astype(np.float32)
    expected = duckdb_cosines(matrix, query)
    with duckdb.connect() as con:
        as_sql_sees_it = sql.query_vector(con, query.tolist())
    got = vector_cache.exact_cosine(matrix, as_sql_sees_it).astype(np.float64)
    assert np.array_equal(got, expected)


def vec_row(cid, item, vector, fp="fp1"):
    return (cid, item, "model", fp, [float(x) for x in vector])


def publish(store, item, vectors, fp="fp1"):
    """Publish ``item`` with one chunk per vector."""
    publish_many(store, {item: vectors}, fp)


def publish_many(store, pages: dict, fp="fp1", texts: dict | None = None):
    """Publish every page of ``pages`` (item -> vectors, one chunk each) in one batch."""
    items = list(pages)
    store.stage_documents(items, [doc(item) for item in items], {}, "run")
    chunks = [
        chunk(item, i, texts[item][i] if texts else None)
        for item in items
        for i in range(len(pages[item]))
    ]
    store.stage_chunks(items, chunks, {}, "run")
    rows = [
        vec_row(f"{item}-{i}", item, v, fp) for item in items for i, v in enumerate(pages[item])
    ]
    store.publish(items, rows, DIM)


def sql_ranking(store, query, fp, limit):
    with store.raw_connection() as con:
        return sql.vector_candidates(con, query, fp, limit)


def test_the_copy_ranks_as_the_sql_ties_included(tmp_path):
    rng = np.random.default_rng(3)
    store = stores.DuckDBStore(tmp_path / "rag.duckdb")
    vectors = rng.standard_normal((300, DIM)).astype(np.float32)
    vectors[100:110] = vectors[5]  # the same page under two URLs: equal vectors, equal scores
    publish_many(store, {f"p{page:02d}": vectors[10 * page : 10 * page + 10] for page in range(30)})
    publish(store, "other", rng.standard_normal((5, DIM)), fp="fp2")  # another fingerprint
    for i in range(8):
        query = (vectors[5] if i % 2 else rng.standard_normal(DIM)).tolist()
        got = store.vector_candidates(query, "fp1", 12)
        assert got == sql_ranking(store, query, "fp1", 12)
        assert not any(row[1] == "other" for row in got)
    (entry,) = vector_cache.CACHE._entries.values()
    assert entry.snapshot is not None and len(entry.snapshot.ids) == 300  # fp1's only


def test_a_one_off_search_ranks_in_sql_and_a_second_takes_the_copy(tmp_path):
    store = stores.DuckDBStore(tmp_path / "rag.duckdb")
    publish(store, "a", np.eye(DIM, dtype=np.float32)[:3])
    store.vector_candidates([1.0] + [0.0] * (DIM - 1), "fp1", 2)
    assert all(e.snapshot is None for e in vector_cache.CACHE._entries.values())
    store.vector_candidates([1.0] + [0.0] * (DIM - 1), "fp1", 2)
    assert any(e.snapshot is not None for e in vector_cache.CACHE._entries.values())


def test_published_batches_are_seen_and_replaced_vectors_too(tmp_path):
    store = stores.DuckDBStore(tmp_path / "rag.duckdb")
    eye = np.eye(DIM, dtype=np.float32)
    publish(store, "a", eye[:3])
    query = eye[7].tolist()
    for _ in range(3):  # the copy is taken and used
        assert store.vector_candidates(query, "fp1", 1)[0][0] != "b-0"
    publish(store, "b", eye[7:8])  # a new batch: the next search sees it
    assert store.vector_candidates(query, "fp1", 1)[0][0] == "b-0"
    assert store.vector_candidates(query, "fp1", 1)[0][0] == "b-0"
    # The same chunk id re-published with another vector (same fingerprint) is seen too.
    publish(store, "b", eye[2:3])
    for _ in range(3):
        top = store.vector_candidates(query, "fp1", 4)
        assert top == sql_ranking(store, query, "fp1", 4)
        assert top[0][8] < 0.5
    # Removed pages are gone from the ranking.
    store.delete_items(["a", "b"])
    assert store.vector_candidates(query, "fp1", 4) == []


def test_vectors_the_copy_cannot_hold_are_ranked_in_sql(tmp_path):
    store = stores.DuckDBStore(tmp_path / "rag.duckdb")
    publish(store, "a", [np.ones(DIM), np.zeros(DIM)])  # a zero vector: NaN cosine in SQL
    query = [1.0] * DIM
    for _ in range(3):
        assert store.vector_candidates(query, "fp1", 2) == sql_ranking(store, query, "fp1", 2)
    assert all(e.snapshot is None for e in vector_cache.CACHE._entries.values())


def test_the_keyword_ranking_is_the_fts_extensions_bm25(tmp_path):
    rng = np.random.default_rng(5)
    words = ["install", "installer", "backoff", "retries", "the", "lumen", "debian", "msi",
             "windows", "configure", "configuration", "running", "runs", "pages"]  # fmt: skip
    store = stores.DuckDBStore(tmp_path / "rag.duckdb")
    keys = [f"p{page:02d}" for page in range(40)]
    texts = {
        key: [" ".join(rng.choice(words, size=rng.integers(3, 30))) for _ in range(5)]
        for key in keys
    }
    for fp, chosen in (("fp1", keys[1:]), ("fp2", keys[:1])):  # p00 under another fingerprint
        publish_many(store, {key: np.ones((5, DIM)) for key in chosen}, fp, texts)
    store.rebuild_keyword_index()
    for _ in range(2):  # the vectors' copy is taken: keyword rows then come from it
        store.vector_candidates([1.0] * DIM, "fp1", 3)
    assert any(e.snapshot is not None for e in vector_cache.CACHE._entries.values())
    for question in ("installing lumen", "Configuration of the MSI"):
        with store.session() as session:
            from_copy = session.keyword_candidates(question, "fp1", 7)
        with store.raw_connection() as con:
            assert from_copy == sql.keyword_candidates(con, question, "fp1", 7)
    with store.raw_connection() as con:
        sql.load_fts(con)
        for question in ("installing lumen", "Configuration of the MSI", "retries?", "nothing"):
            expected = con.execute(
                "SELECT * FROM (SELECT c.chunk_id, c.item_id, d.title, d.url, c.heading, c.text,"
                " d.content_hash, c.chunk_index, fts_main_chunks.match_bm25(c.chunk_id, $q) AS s"
                " FROM chunks c JOIN documents d ON d.item_id = c.item_id WHERE c.chunk_id IN"
                " (SELECT chunk_id FROM embeddings WHERE fingerprint = 'fp1'))"
                " WHERE s IS NOT NULL ORDER BY s DESC, chunk_id LIMIT 7",
                {"q": question},
            ).fetchall()
            got = sql.keyword_candidates(con, question, "fp1", 7)
            assert [r[:8] for r in got] == [r[:8] for r in expected], question
            assert [r[8] for r in got] == pytest.approx([r[8] for r in expected], abs=1e-12)
            filtered = sql.keyword_candidates(con, question, "fp1", 7, url_prefix="http://s/p1")
            assert all(r[3].startswith("http://s/p1") for r in filtered)
    # An index built before the per-pair weights table existed ranks the same from its terms.
    with store.raw_connection(read_only=False) as con:
        weighted = {q: sql.keyword_candidates(con, q, "fp1", 7) for q in ("lumen msi", "runs")}
        con.execute(f"DROP TABLE {sql.FTS_SCHEMA}.{sql.BM25_WEIGHTS}")
        for question, rows in weighted.items():
            got = sql.keyword_candidates(con, question, "fp1", 7)
            assert [r[:8] for r in got] == [r[:8] for r in rows], question
            assert [r[8] for r in got] == pytest.approx([r[8] for r in rows], abs=1e-12)
