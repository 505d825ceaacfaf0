"""Semantic search over the stored chunks: embed the question, rank by cosine in DuckDB."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rag_core import store
from rag_core.fingerprint import settings_fingerprint
from rag_core.settings import Settings

SEARCH_SQL = """
SELECT c.chunk_id, c.item_id, d.title, d.url, c.heading, c.text,
       array_cosine_similarity(e.embedding, $query::FLOAT[{dim}]) AS score
FROM embeddings e
JOIN chunks c USING (chunk_id)
JOIN documents d ON d.item_id = c.item_id
-- Only vectors of the current index fingerprint: two fingerprints are never ranked together.
WHERE e.fingerprint = $fingerprint
-- The same page under two URLs (/ and /index.html) is stored twice; show it once.
QUALIFY row_number() OVER (PARTITION BY d.content_hash, c.chunk_index ORDER BY d.url) = 1
ORDER BY score DESC, c.chunk_id
LIMIT $k
"""


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


def embedder_for(settings: Settings):
    """The same embedding resource the assets use (warm server if configured, else in-process)."""
    from resources.embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder.from_settings(settings)


def search(settings: Settings, question: str, k: int = 5, embedder=None) -> list[Hit]:
    """Top ``k`` chunks for ``question``; reads DuckDB briefly, waiting out a writer's lock."""
    if not question.strip():
        raise SearchError("the question is empty")
    if not settings.duckdb_path.exists():
        raise SearchError(f"{settings.duckdb_path} does not exist yet: run `make run` first")
    embedder = embedder or embedder_for(settings)
    vectors, _ = embedder.embed([question])
    query = vectors[0].tolist()
    with store.connect(settings.duckdb_path, read_only=True) as con:
        if not store.table_exists(con, "embeddings"):
            raise SearchError("no embeddings stored yet")
        dim = store.embeddings_dimension(con)
        if dim != len(query):
            raise SearchError(f"stored vectors have {dim} dimensions, the model gives {len(query)}")
        rows = con.execute(
            SEARCH_SQL.format(dim=dim),
            {"query": query, "fingerprint": settings_fingerprint(settings), "k": k},
        ).fetchall()
    return [
        Hit(
            rank=i + 1,
            score=round(float(r[6]), 4),
            title=r[2] or "",
            url=r[3],
            heading=r[4] or "",
            text=r[5],
            chunk_id=r[0],
            item_id=r[1],
        )
        for i, r in enumerate(rows)
    ]


def graph_context(settings: Settings, hits: list[Hit]) -> dict[str, dict]:
    """For each hit, its neighbouring chunks along NEXT and the pages linking to its page,
    read from the graph sink (USE_NEO4J=true)."""
    from dataclasses import asdict as as_dict

    if not settings.use_neo4j:
        raise SearchError("--graph needs the graph sink: set USE_NEO4J=true (and NEO4J_*)")
    from rag_assets.definitions import build_graph_resource

    graph = build_graph_resource(settings).process_config_and_initialize()
    try:
        found = graph.neighbours([hit.chunk_id for hit in hits])
    except Exception as exc:  # the sink's errors name the URI, never the password
        raise SearchError(f"graph sink: {exc}") from exc
    return {chunk_id: as_dict(neighbours) for chunk_id, neighbours in found.items()}
