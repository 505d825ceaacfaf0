"""Asset checks on the stored vectors: every chunk embedded, the model's width, finite values."""

import dagster as dg

from rag_core.constants import EMBEDDINGS_ASSET
from resources.duckdb_store import DuckDBStore
from resources.embedder import EmbedderResource


@dg.asset_check(asset=EMBEDDINGS_ASSET, description="Every stored chunk has exactly one vector.")
def every_chunk_embedded(duckdb: DuckDBStore) -> dg.AssetCheckResult:
    """Fails when chunks have no vector (or a vector outlived its chunk)."""
    store = duckdb.get_store()
    if not store.has_embeddings():
        return dg.AssetCheckResult(passed=False, metadata={"reason": "no embeddings table yet"})
    missing, orphans, duplicates, sample = store.embedding_coverage()
    return dg.AssetCheckResult(
        passed=missing == 0 and orphans == 0 and duplicates == 0,
        metadata={
            "chunks_without_vector": missing,
            "vectors_without_chunk": orphans,
            "duplicate_vectors": duplicates,
            "items_missing_vectors": ", ".join(sample) or "none",
        },
    )


@dg.asset_check(asset=EMBEDDINGS_ASSET, description="Every vector has the model's dimension.")
def embedding_dimension_matches_model(
    duckdb: DuckDBStore, embedder: EmbedderResource
) -> dg.AssetCheckResult:
    """Fails when a stored vector's width differs from the configured model's dimension."""
    expected = embedder.get_embedder().dimension
    store = duckdb.get_store()
    if not store.has_embeddings():
        return dg.AssetCheckResult(passed=False, metadata={"reason": "no embeddings table yet"})
    rows = store.vector_widths()
    wrong = sum(n for dim, _, n in rows if dim != expected)
    return dg.AssetCheckResult(
        passed=wrong == 0,
        metadata={
            "expected_dimension": expected or 0,
            "vectors_with_other_dimension": wrong,
            "by_model": dg.MetadataValue.json({f"{m} ({d})": n for d, m, n in rows}),
        },
    )


@dg.asset_check(asset=EMBEDDINGS_ASSET, description="No vector holds NaN or infinity.")
def embeddings_are_finite(duckdb: DuckDBStore) -> dg.AssetCheckResult:
    """Fails when any vector component is NaN or infinite (a broken model or dtype)."""
    store = duckdb.get_store()
    if not store.has_embeddings():
        return dg.AssetCheckResult(passed=False, metadata={"reason": "no embeddings table yet"})
    bad = store.non_finite_vectors()
    return dg.AssetCheckResult(passed=bad == 0, metadata={"non_finite_vectors": bad})


@dg.asset_check(asset=EMBEDDINGS_ASSET, description="All vectors share one index fingerprint.")
def one_index_fingerprint(duckdb: DuckDBStore) -> dg.AssetCheckResult:
    """Fails while vectors of two index fingerprints (model weights, dtype, chunking) remain:
    after a completed re-index every page is on the current one."""
    store = duckdb.get_store()
    if not store.has_embeddings():
        return dg.AssetCheckResult(passed=False, metadata={"reason": "no embeddings table yet"})
    counts = store.fingerprint_counts()
    return dg.AssetCheckResult(
        passed=len(counts) <= 1,
        metadata={"pages_by_fingerprint": dg.MetadataValue.json(counts)},
    )


embedding_checks = [
    every_chunk_embedded,
    embedding_dimension_matches_model,
    embeddings_are_finite,
    one_index_fingerprint,
]
