"""Search modes over a real DuckDB file: keyword (BM25, fts extension loaded offline from its
wheel), vector, hybrid (reciprocal rank fusion), results by page, filters, de-duplication,
and the keyword index rebuilt when chunks change."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from rag_app.search import SearchError, dedupe, fuse, search
from rag_core.fingerprint import settings_fingerprint
from rag_core.stores import duckdb_store as store
from tests.helpers import settings_for

DIM = 8
MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# (url, title, [(heading, text), ...]); the vector of a chunk is its topic's axis.
PAGES = [
    (
        "http://t/install.html",
        "Installing",
        [
            ("Installing > Linux", "apt install lumen on Debian"),
            ("Installing > Windows", "use the MSI installer"),
        ],
    ),
    ("http://t/retries.html", "Retries", [("Retries", "exponential backoff between attempts")]),
    ("http://t/blog/news.html", "News", [("News", "we mention backoff and the MSI in passing")]),
    # The same page under a second URL: stored twice, shown once.
    ("http://t/index.html", "Home", [("Home", "welcome to lumen documentation")]),
    ("http://t/", "Home", [("Home", "welcome to lumen documentation")]),
]
AXIS = {"apt": 0, "MSI": 1, "exponential": 2, "mention": 3, "welcome": 4}


def axis_of(text: str) -> int:
    return next(i for word, i in AXIS.items() if word in text)


class AxisEmbedder:
    """Embeds a text onto the axis of the first topic word it contains (or a fixed mix)."""

    @dataclasses.dataclass
    class Info:
        name: str = MODEL
        dimension: int = DIM

    info = Info()

    def embed(self, texts):
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            try:
                out[row, axis_of(text)] = 1.0
            except StopIteration:
                out[row, 7] = 1.0
        return out, "test"


def item_of(url: str) -> str:
    return url.removeprefix("http://t/") or "root"


def make_store(settings):
    embedder = AxisEmbedder()
    fingerprint = settings_fingerprint(settings)
    with store.connect(settings.duckdb_path) as con:
        store.ensure_schema(con, DIM)
        for url, title, chunks in PAGES:
            item = item_of(url)
            body = " ".join(text for _, text in chunks)
            store.insert_rows(
                con, "documents", ("item_id", "url", "title", "text", "content_hash"),
                [(item, url, title, body, f"h-{body}")],
            )  # fmt: skip
            for i, (heading, text) in enumerate(chunks):
                cid = f"{item}-{i}"
                store.insert_rows(
                    con, "chunks",
                    ("chunk_id", "item_id", "chunk_index", "heading", "text", "token_count",
                     "content_hash"),
                    [(cid, item, i, heading, text, 5, "c")],
                )  # fmt: skip
                vec = embedder.embed([text])[0][0].tolist()
                store.insert_rows(
                    con, "embeddings", ("chunk_id", "item_id", "model", "fingerprint", "embedding"),
                    [(cid, item, MODEL, fingerprint, vec)],
                )  # fmt: skip
    return embedder


@pytest.fixture()
def setup(tmp_path):
    settings = settings_for(tmp_path)
    embedder = make_store(settings)
    return settings, embedder


def test_keyword_mode_ranks_by_bm25_with_the_extension_loaded_offline(setup):
    settings, embedder = setup
    hits = search(settings, "MSI installer", 3, embedder, mode="keyword")
    assert hits[0].url == "http://t/install.html"
    assert hits[0].heading == "Installing > Windows"
    # stemming: "attempt" finds "attempts"
    assert search(settings, "attempt", 1, embedder, mode="keyword")[0].url.endswith("retries.html")


def test_vector_mode_ranks_by_cosine(setup):
    settings, embedder = setup
    hits = search(settings, "exponential", 2, embedder, mode="vector")
    assert hits[0].url.endswith("retries.html") and hits[0].score == pytest.approx(1.0)


def test_hybrid_fuses_both_lists(setup):
    settings, embedder = setup
    # Vectors say "mention" (the blog post); BM25 says "backoff" ranks retries and the blog.
    hits = search(settings, "mention backoff", 3, embedder, mode="hybrid")
    urls = [h.url for h in hits]
    assert urls[0].endswith("news.html")  # first in both lists
    assert any(u.endswith("retries.html") for u in urls)


def test_a_page_under_two_urls_is_shown_once(setup):
    settings, embedder = setup
    for mode in ("vector", "keyword", "hybrid"):
        hits = search(settings, "welcome lumen documentation", 5, embedder, mode=mode)
        home = [h for h in hits if "welcome" in h.text]
        assert len(home) == 1, mode


def test_by_page_keeps_each_pages_best_chunk(setup):
    settings, embedder = setup
    chunks = search(settings, "lumen install MSI apt", 5, embedder, mode="keyword")
    assert [h.url for h in chunks].count("http://t/install.html") == 2
    pages = search(settings, "lumen install MSI apt", 5, embedder, mode="keyword", by_page=True)
    assert [h.url for h in pages].count("http://t/install.html") == 1


def test_filters_by_url_prefix_and_title(setup):
    settings, embedder = setup
    for mode in ("vector", "keyword", "hybrid"):
        hits = search(settings, "backoff MSI", 5, embedder, mode=mode, url_prefix="http://t/blog/")
        assert hits and all(h.url.startswith("http://t/blog/") for h in hits), mode
        hits = search(settings, "backoff MSI", 5, embedder, mode=mode, title="retr")
        assert hits and all(h.title == "Retries" for h in hits), mode


def test_keyword_index_is_rebuilt_when_chunks_change(setup, monkeypatch):
    from rag_app import search as search_module

    settings, embedder = setup
    assert not search(settings, "kubernetes", 3, embedder, mode="keyword")
    with store.connect(settings.duckdb_path) as con:
        store.insert_rows(
            con, "chunks",
            ("chunk_id", "item_id", "chunk_index", "heading", "text", "token_count",
             "content_hash"),
            [("retries-1", item_of("http://t/retries.html"), 1, "Retries",
              "retries on kubernetes", 4, "c")],
        )  # fmt: skip
        vector = embedder.embed(["retries on kubernetes"])[0][0].tolist()
        store.insert_rows(
            con, "embeddings", ("chunk_id", "item_id", "model", "fingerprint", "embedding"),
            [("retries-1", item_of("http://t/retries.html"), MODEL,
              settings_fingerprint(settings), vector)],
        )  # fmt: skip
    # A stale index younger than FTS_REBUILD_AFTER_S is used as is (no rebuild storm while
    # ingestion commits batch after batch) ...
    assert not search(settings, "kubernetes", 3, embedder, mode="keyword")
    # ... and rebuilt once it is older.
    monkeypatch.setattr(search_module, "FTS_REBUILD_AFTER_S", 0.0)
    hits = search(settings, "kubernetes", 3, embedder, mode="keyword")
    assert [h.chunk_id for h in hits] == ["retries-1"]


def test_a_stale_index_never_returns_deleted_chunks(setup):
    """Between a change and the next rebuild the stale index is used (read-only readers
    cannot rebuild it): deleted chunks drop out through the join with the chunks table."""
    settings, embedder = setup
    search(settings, "MSI", 1, embedder, mode="keyword")  # builds the index
    with store.connect(settings.duckdb_path) as con:
        con.execute("DELETE FROM chunks WHERE text LIKE '%MSI installer%'")
    with store.connect(settings.duckdb_path, read_only=True) as con:
        store.load_fts(con)
        assert not store.fts_is_current(con)
        rows = store.keyword_candidates(con, "MSI installer", settings_fingerprint(settings), 5)
    assert rows and all("MSI installer" not in r[5] for r in rows)


def test_bad_mode_and_k_are_clear_errors(setup):
    settings, embedder = setup
    with pytest.raises(SearchError, match="unknown search mode 'fuzzy'"):
        search(settings, "x", 3, embedder, mode="fuzzy")
    with pytest.raises(SearchError, match="k must be at least 1"):
        search(settings, "x", 0, embedder)


def test_fuse_and_dedupe():
    a = [("c1", 0, 0, 0, 0, 0, "p1", 0), ("c2", 0, 0, 0, 0, 0, "p1", 1)]
    b = [("c2", 0, 0, 0, 0, 0, "p1", 1), ("c3", 0, 0, 0, 0, 0, "p2", 0)]
    fused = fuse([a, b])
    assert [r[0] for r, _ in fused] == ["c2", "c1", "c3"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert [r[0] for r, _ in dedupe(fused, 5, by_page=True)] == ["c2", "c3"]
    assert [r[0] for r, _ in dedupe(fused, 2, by_page=False)] == ["c2", "c1"]


class _Candidates:
    """A store session that returns fixed candidate lists (the fields of Store candidates)."""

    def __init__(self, vector, keyword):
        self.lists = {"vector": vector, "keyword": keyword}

    def vector_candidates(self, query, fingerprint, limit, url_prefix="", title=""):
        return self.lists["vector"][:limit]

    def keyword_candidates(self, question, fingerprint, limit, url_prefix="", title=""):
        return self.lists["keyword"][:limit]


def _row(chunk, page, index=0):
    return (chunk, "item-" + page, page.upper(), f"http://t/{page}", "", "text", page, index, 0.0)


def test_hybrid_by_page_fuses_pages_not_chunks():
    """A page that both lists rank second, through different chunks, beats pages that only one
    list ranks first: by chunk, each of its chunks got one list's share and it came third."""
    from rag_app.search import _ranked

    con = _Candidates(
        vector=[_row("q1", "q"), _row("p-install", "p", 0)],
        keyword=[_row("r1", "r"), _row("p-options", "p", 3)],
    )
    ranked = _ranked(con, "hybrid", "question", [0.0], "fp", 3, True, "", "")
    assert [row[6] for row, _ in ranked] == ["p", "q", "r"]
    assert ranked[0][1] == pytest.approx(2 / 62)
    # Chunks (not by page) are still fused per chunk.
    chunks = _ranked(con, "hybrid", "question", [0.0], "fp", 4, False, "", "")
    assert [row[0] for row, _ in chunks][:2] == ["q1", "r1"]
