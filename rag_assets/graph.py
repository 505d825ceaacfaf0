"""The optional graph sink: the batch's pages, chunks and links copied from DuckDB to Neo4j.

``graph_pages`` runs after ``embeddings`` in the same ingestion run (USE_NEO4J=true).
It only reads DuckDB, whose rows for the batch are complete by then, so a graph outage
fails this step alone: the DuckDB side is never affected, and the ``graph_catch_up``
sensor writes the missed partitions once the server answers again.
"""

import time
import warnings
from collections.abc import Sequence

import dagster as dg

from rag_assets.jobs import graph_catch_up_job
from rag_assets.partitions import items_partitions
from rag_core import ids
from rag_core.constants import EMBEDDINGS_ASSET, ITEMS_METADATA
from rag_core.settings import Settings
from resources.duckdb_store import DuckDBStore
from resources.graph_sink import (
    GraphChunk,
    GraphPage,
    GraphSinkAuthError,
    Neo4jGraphSink,
    WriteSummary,
    graph_sink_from_settings,
)

warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")

GROUP = "graph"
# Items read from DuckDB and written per step of the loop: bounds memory (each chunk carries
# its vector) when a catch-up run covers thousands of partitions.
ITEMS_PER_READ = 500
# Blips (a server restart, a leader switch) are retried here; a longer outage fails the step
# and the graph_catch_up sensor writes the partitions later, so the delays stay short.
GRAPH_RETRY = dg.RetryPolicy(
    max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def link_ids(item_id: str, links: Sequence[str] | None) -> list[str]:
    """Item keys of a page's outgoing links (raw_items.links are canonical URLs), without itself."""
    keys = dict.fromkeys(ids.item_key(url) for url in links or ())
    keys.pop(item_id, None)
    return list(keys)


def read_pages(duckdb: DuckDBStore, keys: Sequence[str]) -> tuple[list[GraphPage], list[str]]:
    """The pages of ``keys`` as DuckDB holds them, and the keys without a document there."""
    docs, chunk_rows = duckdb.get_store().graph_rows(keys)
    chunks: dict[str, list[GraphChunk]] = {}
    for item_id, chunk_id, index, text, vector in chunk_rows:
        chunks.setdefault(item_id, []).append(
            GraphChunk(chunk_id, index, text, list(vector) if vector is not None else None)
        )
    pages = [
        GraphPage(
            item_id=item_id,
            url=url,
            title=title or "",
            content_hash=content_hash,
            link_ids=link_ids(item_id, links),
            chunks=chunks.get(item_id, []),
        )
        for item_id, url, title, content_hash, links in docs
    ]
    found = {p.item_id for p in pages}
    # No document (never extracted, or deleted): the graph mirrors DuckDB and drops the page.
    return pages, [k for k in keys if k not in found]


@dg.asset(
    partitions_def=items_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[EMBEDDINGS_ASSET],
    group_name=GROUP,
    kinds={"neo4j"},
    retry_policy=GRAPH_RETRY,
)
def graph_pages(
    context: dg.AssetExecutionContext, duckdb: DuckDBStore, graph: Neo4jGraphSink
) -> dg.MaterializeResult:
    """Pages, their chunks in reading order (NEXT) and links between pages, in the graph."""
    started = time.monotonic()
    keys = context.partition_keys
    total = WriteSummary()
    write_s = 0.0
    schema = None
    try:
        for start in range(0, len(keys), ITEMS_PER_READ):
            pages, removed = read_pages(duckdb, keys[start : start + ITEMS_PER_READ])
            dim = next((len(c.embedding) for p in pages for c in p.chunks if c.embedding), 0)
            # Once per run, and again if the first group had no vector to size the index by.
            if schema is None or (dim and schema.dimension is None):
                schema = graph.ensure_schema(dim or None)
                if schema.note:  # e.g. no vector index on this server: worth a line in the log
                    context.log.info(schema.note)
            t0 = time.monotonic()
            total.add(graph.write_pages(pages, removed))
            write_s += time.monotonic() - t0
    except GraphSinkAuthError as exc:
        # Wrong credentials do not heal by themselves: fail at once instead of retrying.
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    context.log.info(
        f"graph at {graph.uri}: {total.pages} page(s), {total.chunks} chunk(s), "
        f"{total.links} link(s) in {write_s:.2f} s"
    )
    return dg.MaterializeResult(
        metadata={
            ITEMS_METADATA: dg.MetadataValue.int(len(keys)),
            "pages": dg.MetadataValue.int(total.pages),
            "chunks": dg.MetadataValue.int(total.chunks),
            "next_edges": dg.MetadataValue.int(total.next_edges),
            "links": dg.MetadataValue.int(total.links),
            "stale_chunks_deleted": dg.MetadataValue.int(total.stale_chunks_deleted),
            "pages_deleted": dg.MetadataValue.int(total.pages_deleted),
            "vector_index": dg.MetadataValue.bool(bool(schema and schema.vector_index)),
            "schema_note": dg.MetadataValue.text(schema.note if schema else ""),
            "graph_uri": dg.MetadataValue.text(graph.uri),
            "write_s": dg.MetadataValue.float(round(write_s, 3)),
            "elapsed_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
        }
    )


def graph_definitions(settings: Settings) -> dg.Definitions:
    """The graph area (USE_NEO4J): graph_pages, which the ingestion job then ends with, the
    catch-up job and the Neo4j sink."""
    return dg.Definitions(
        assets=[graph_pages],
        jobs=[graph_catch_up_job],
        resources={"graph": graph_sink_from_settings(settings)},
    )
