"""Search over the stored chunks: vector (cosine in DuckDB), keyword (BM25, DuckDB fts) or
hybrid (both ranked lists fused by reciprocal rank)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from typing import Any

from rag_core import stores
from rag_core.embedders import Embedder
from rag_core.fingerprint import settings_fingerprint
from rag_core.settings import Settings

log = logging.getLogger(__name__)

MODES = ("hybrid", "vector", "keyword")
DEFAULT_MODE = "hybrid"
# Reciprocal rank fusion: score = sum over lists of 1 / (RRF_K + rank). 60 is the constant of
# the original paper (Cormack et al. 2009); it keeps one list's top rank from dominating.
RRF_K = 60
# Each list contributes this many candidates to the fusion (more = slower, rarely better).
FUSION_DEPTH = 50
# A stale keyword index younger than this is used as is: while ingestion commits batch after
# batch, searches would otherwise rebuild it (and take the file for writing) again and again.
FTS_REBUILD_AFTER_S = 10.0


class SearchError(RuntimeError):
    """Nothing to search yet, or the store cannot be read."""


@dataclass(frozen=True)
class Hit:
    """One ranked chunk."""

    rank: int
    score: float
    title: str
    url: str
    heading: str
    text: str
    chunk_id: str
    item_id: str

    def snippet(self, width: int = 220) -> str:
        flat = " ".join(self.text.split())
        return flat if len(flat) <= width else flat[: width - 1] + "…"

    def as_dict(self) -> dict:
        return asdict(self)


def embedder_for(settings: Settings) -> Embedder:
    """The question's embedder: a warm server of the same model and dtype (EMBEDDING_SERVER_URL,
    or the one a running ``rag run`` / ``rag dev`` announced in ``<DATA_DIR>/embedding-server.
    json``: one HTTP request, no torch in this process), else the model loaded here by its
    fastest path (rag_core.embedders.sentence_transformers: numpy for MiniLM)."""
    from rag_core.embedders import embedder_from_settings
    from rag_core.server_state import live_server, state_path
    from rag_core.settings import TOKEN_ENV, secret

    # A server named in the settings takes the session's token from the environment; one
    # found through its state file (mode 0600, this user's only) carries its own.
    url, token = settings.embedding_server_url, secret(TOKEN_ENV)
    local = embedder_from_settings(settings, server_url="", for_queries=True)
    if not url:
        state = live_server(state_path(settings.data_dir), local.name, local.dtype)
        if state is not None:
            url, token = state.url, state.token
    return embedder_from_settings(settings, server_url=url, token=token, for_queries=True)


def search(
    settings: Settings,
    question: str,
    k: int = 5,
    embedder: Embedder | None = None,
    mode: str = DEFAULT_MODE,
    by_page: bool = False,
    url_prefix: str = "",
    title: str = "",
) -> list[Hit]:
    """Top ``k`` chunks (or pages, ``by_page``) for ``question``; reads DuckDB briefly, waiting
    out a writer's lock. ``url_prefix`` and ``title`` (substring) filter the pages searched."""
    if not question.strip():
        raise SearchError("the question is empty")
    if mode not in MODES:
        raise SearchError(f"unknown search mode {mode!r}: use one of {', '.join(MODES)}")
    if k < 1:
        raise SearchError(f"k must be at least 1, got {k}")
    store = stores.open_store(settings)
    if not store.exists():
        raise SearchError(f"{settings.duckdb_path} does not exist yet: run `make run` first")
    if mode != "vector" and settings.store_backend == "ducklake":
        # The fts index is DuckDB-file tables and macros, rebuilt in place: not built on a lake.
        raise SearchError(
            f"{mode} search needs the keyword index, which is not built on DuckLake "
            "(STORE_BACKEND=ducklake): use --mode vector"
        )
    query = None
    # Only chunks whose vectors carry the current index fingerprint are ranked, in every mode:
    # two fingerprints (another model, dtype or chunking) are never compared with each other,
    # and during a re-index search serves the pages already on the current one.
    fingerprint = settings_fingerprint(settings)
    if mode != "keyword":
        embedder = embedder or embedder_for(settings)
        vectors, _ = embedder.embed([question])
        query = vectors[0].tolist()
    args = (store, mode, question, query, fingerprint, k, by_page, url_prefix, title)
    rows = _query(*args)
    if rows is None:  # the keyword index is stale: rebuild it if the file is free, then rank
        rebuild_fts(settings)
        rows = _query(*args, stale_ok=True)
    return [
        Hit(
            rank=i + 1,
            score=round(float(score), 4),
            title=r[2] or "",
            url=r[3],
            heading=r[4] or "",
            text=r[5],
            chunk_id=r[0],
            item_id=r[1],
        )
        for i, (r, score) in enumerate(rows)
    ]


def _query(
    store, mode, question, query, fingerprint, k, by_page, url_prefix, title, stale_ok=False
):
    """Ranked (row, score) pairs from one short read-only session; None when keyword ranks
    are needed and the index is stale (and ``stale_ok`` is not set)."""
    with store.session(read_only=True) as con:
        if not con.has_embeddings():
            raise SearchError("no embeddings stored yet")
        if query is not None:
            dim = con.embeddings_dimension()
            if dim != len(query):
                raise SearchError(
                    f"stored vectors have {dim} dimensions, the model gives {len(query)}"
                )
        if mode != "vector" and not stale_ok and not con.keyword_index_current():
            return None
        return _ranked(con, mode, question, query, fingerprint, k, by_page, url_prefix, title)


def _ranked(con, mode, question, query, fingerprint, k, by_page, url_prefix, title):
    """Fetch a few candidates per list, de-duplicate them, and grow the fetch only when
    duplicates left fewer than ``k``: the work is O(k) rows, not a pass over every chunk."""
    depth = max(FUSION_DEPTH, 4 * k) if mode == "hybrid" else 4 * k + 8
    while True:
        vec = kw = []
        if mode != "keyword":
            vec = con.vector_candidates(query, fingerprint, depth, url_prefix, title)
        if mode != "vector":
            kw = con.keyword_candidates(question, fingerprint, depth, url_prefix, title)
        if mode == "hybrid" and by_page:
            # Pages are fused, not chunks: a page whose best vector chunk and best keyword
            # chunk differ is still ranked high by both lists, instead of each chunk getting
            # one list's share.
            scored = fuse([best_per_page(vec), best_per_page(kw)], key=PAGE)
        elif mode == "hybrid":
            scored = fuse([vec, kw])
        else:
            scored = [(r, r[8]) for r in (vec or kw)]
        out = dedupe(scored, k, by_page)
        exhausted = len(vec) < depth and len(kw) < depth
        if len(out) >= k or exhausted:
            return out
        depth *= 4


# Candidate row fields (Store.vector_candidates / keyword_candidates).
CHUNK, PAGE = 0, 6  # chunk id; the page's content hash (one page stored under two URLs is one)


def fuse(lists: list[list[tuple]], key: int = CHUNK) -> list[tuple[tuple, float]]:
    """Reciprocal rank fusion of ranked row lists, rows identified by field ``key`` (the chunk
    id, or the page for lists of one row per page). Each item is shown by its row from the
    list that ranked it highest."""
    scores: dict[str, float] = {}
    rows: dict[str, tuple[int, tuple]] = {}
    for ranked in lists:
        for rank, row in enumerate(ranked, start=1):
            ident = row[key]
            scores[ident] = scores.get(ident, 0.0) + 1.0 / (RRF_K + rank)
            if ident not in rows or rank < rows[ident][0]:
                rows[ident] = (rank, row)
    order = sorted(scores, key=lambda ident: (-scores[ident], ident))
    return [(rows[ident][1], scores[ident]) for ident in order]


def best_per_page(ranked: list[tuple]) -> list[tuple]:
    """Each page's first (best-ranked) row, in order."""
    return first_of_each(ranked, lambda row: row[PAGE])


def first_of_each(items: list, key: Callable[[Any], Hashable], limit: int | None = None) -> list:
    """The first item of each ``key``, in order, at most ``limit`` of them."""
    seen: set = set()
    out = []
    for item in items:
        ident = key(item)
        if ident in seen:
            continue
        seen.add(ident)
        out.append(item)
        if len(out) == limit:
            break
    return out


def dedupe(scored: list[tuple[tuple, float]], k: int, by_page: bool) -> list[tuple[tuple, float]]:
    """The first ``k`` rows, each page's text shown once: the same page stored under two URLs
    (/ and /index.html) has one content hash; ``by_page`` keeps only each page's best chunk."""
    if by_page:
        return first_of_each(scored, lambda pair: pair[0][PAGE], k)
    return first_of_each(scored, lambda pair: (pair[0][PAGE], pair[0][7]), k)


def rebuild_fts(settings: Settings, wait_s: float = 1.0) -> None:
    """Rebuild the keyword index after chunks changed. Needs the file for writing: while
    ingestion holds it, the stale index is used and rebuilt by a later search."""
    try:
        with stores.open_store(settings, wait_s).session(read_only=False) as con:
            age = con.keyword_index_age_s()
            if age is not None and age < FTS_REBUILD_AFTER_S:
                return
            if not con.keyword_index_current():
                took = con.rebuild_keyword_index()
                log.info("keyword index rebuilt in %.2f s", took)
    except stores.StoreLockedError:
        log.info("keyword index is stale and the store is busy: using the stale index")


def graph_context(settings: Settings, hits: list[Hit]) -> dict[str, dict]:
    """For each hit, its neighbouring chunks along NEXT and the pages linking to its page,
    read from the graph sink (USE_NEO4J=true)."""
    from dataclasses import asdict as as_dict

    if not settings.use_neo4j:
        raise SearchError("--graph needs the graph sink: set USE_NEO4J=true (and NEO4J_*)")
    from resources.graph_sink import graph_sink_from_settings

    graph = graph_sink_from_settings(settings).process_config_and_initialize()
    try:
        found = graph.neighbours([hit.chunk_id for hit in hits])
    except Exception as exc:  # the sink's errors name the URI, never the password
        raise SearchError(f"graph sink: {exc}") from exc
    return {chunk_id: as_dict(neighbours) for chunk_id, neighbours in found.items()}
