"""Item-partitioned ingestion: raw_items -> documents -> chunks -> embeddings.

Every asset handles all partitions of its run at once (``BackfillPolicy.single_run``):
a run carries the batch of items the sensor found, and the embedding model
encodes all their chunks in shared batches. raw_items writes its table; documents and
chunks write staging tables, and embeddings swaps each item's document, chunks and
vectors in together, in one transaction (store.publish_items): readers see a page's old
version or its new one, never neither and never a mix. Every write replaces the batch's
rows, so every rerun is safe. A broken item is recorded in ``ingest_errors`` (item,
stage, error) and skipped; it never fails the rest of its batch.
"""

import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from rag_assets.crawl import crawled_pages
from rag_assets.jobs import ingest_job
from rag_assets.partitions import items_partitions
from rag_core import ids, store
from rag_core.batches import read_manifest
from rag_core.constants import (
    EMBEDDED_METADATA,
    FIRST_STORED_AT_METADATA,
    ITEMS_METADATA,
    ITEMS_PARTITIONS,
    MANIFEST_TAG,
    REUSED_METADATA,
)
from rag_core.extraction import extract_document
from rag_core.fingerprint import index_fingerprint
from rag_core.items import ItemFileError
from rag_core.settings import Settings
from resources.chunker import TokenChunker
from resources.duckdb_store import DuckDBStore
from resources.embedder import SentenceTransformerEmbedder
from resources.raw_items import RawItemStore

# single_run backfill policy is the documented way to micro-batch (docs/architecture.md,
# *Decisions and the facts behind them*), still "beta".
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")

GROUP = "ingestion"
# Transient failures (a DuckDB lock held too long, a brief I/O error) retry with backoff;
# per-item failures are recorded, not raised, so they are never retried in a loop.
RETRY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
PREVIEW_CHARS = 300
# Embeddings are committed in groups of whole items, so stored results grow during a run;
# the first group is small so that the first vectors are searchable within a second or two.
EMBED_FIRST_GROUP_CHUNKS = 32
EMBED_WRITE_GROUP_CHUNKS = 512


def _item_asset(**kwargs):
    return dg.asset(
        partitions_def=items_partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=GROUP,
        retry_policy=RETRY,
        **kwargs,
    )


def batch_keys(context: dg.AssetExecutionContext, raw_store: RawItemStore) -> list[str]:
    """The exact items this run was requested for: its manifest's keys (rag_core.batches),
    less any pruned since; without a manifest (a run launched by hand), its partition range."""
    batch_id = context.run.tags.get(MANIFEST_TAG)
    if not batch_id:
        return list(context.partition_keys)
    try:
        keys = read_manifest(raw_store.folder, batch_id)
    except (OSError, ValueError) as exc:
        context.log.warning(f"batch manifest unusable ({exc}); using the partition range")
        return list(context.partition_keys)
    live = set(context.instance.get_dynamic_partitions(ITEMS_PARTITIONS))
    return [key for key in keys if key in live]


def _in_list(column: str = "item_id") -> str:
    return f"{column} IN (SELECT unnest(?))"


def _select(store: DuckDBStore, sql: str, keys: Sequence[str]) -> list[tuple]:
    return store.query(sql, [list(keys)])


def _error_preview(errors: dict[str, str]) -> dg.MetadataValue:
    lines = [
        f"| `{key}` | {msg[:200].replace('|', '/')} |" for key, msg in list(errors.items())[:20]
    ]
    table = "| item | error |\n| --- | --- |\n" + "\n".join(lines) if lines else "no errors"
    return dg.MetadataValue.md(table)


def _common_metadata(keys: Sequence[str], errors: dict[str, str], started: float) -> dict:
    return {
        ITEMS_METADATA: dg.MetadataValue.int(len(keys)),
        "errors": dg.MetadataValue.int(len(errors)),
        "error_items": _error_preview(errors),
        "elapsed_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
    }


RAW_COLUMNS = (
    "item_id",
    "url",
    "requested_url",
    "status",
    "content_type",
    "title",
    "fetched_at",
    "html_chars",
    "truncated",
    "links",
    "file_path",
)


@_item_asset(kinds={"json", "duckdb"}, deps=[crawled_pages])
def raw_items(
    context: dg.AssetExecutionContext, raw_store: RawItemStore, duckdb: DuckDBStore
) -> dg.MaterializeResult:
    """Crawled pages, validated from their item files, as rows of the raw_items table."""
    started = time.monotonic()
    keys = batch_keys(context, raw_store)
    # The file versions this run ingests (read before the files): reconciliation compares
    # them with what is on disk once the run is over.
    mtimes = {}
    for key in keys:
        try:
            mtimes[key] = raw_store.path_for(key).stat().st_mtime_ns
        except OSError:
            pass  # a missing file is reported as an error below
    duckdb.mark_files_started(mtimes)
    rows, errors = [], {}
    for key in keys:
        try:
            item = raw_store.read(key)
        except ItemFileError as exc:
            errors[key] = str(exc)
            continue
        rows.append(
            (
                item.item_id,
                item.url,
                item.requested_url,
                item.status,
                item.content_type,
                item.title,
                item.fetched_at,
                len(item.html),
                item.truncated,
                list(item.links),
                str(raw_store.path_for(key)),
            )
        )
    if errors:
        context.log.warning(f"{len(errors)} item file(s) unusable: {list(errors)[:5]}")
    duckdb.store_stage(
        "raw_items",
        keys,
        "raw_items",
        RAW_COLUMNS,
        rows,
        [r[0] for r in rows],
        errors,
        context.run_id,
    )
    return dg.MaterializeResult(
        metadata={
            **_common_metadata(keys, errors, started),
            "stored": dg.MetadataValue.int(len(rows)),
            "truncated_pages": dg.MetadataValue.int(sum(1 for r in rows if r[8])),
            "preview": dg.MetadataValue.md(
                "\n".join(f"- [{r[5] or r[1]}]({r[1]})" for r in rows[:10]) or "(none)"
            ),
        }
    )


DOC_COLUMNS = (
    "item_id",
    "url",
    "title",
    "text",
    "content_hash",
    "word_count",
    "headings",
    "fetched_at",
)


@_item_asset(kinds={"python", "duckdb"}, deps=[raw_items])
def documents(
    context: dg.AssetExecutionContext, raw_store: RawItemStore, duckdb: DuckDBStore
) -> dg.MaterializeResult:
    """Main text of each page (boilerplate removed, structure kept) with its content hash."""
    started = time.monotonic()
    keys = batch_keys(context, raw_store)
    valid = {
        row[0] for row in _select(duckdb, f"SELECT item_id FROM raw_items WHERE {_in_list()}", keys)
    }
    rows, errors = [], {}
    for key in keys:
        if key not in valid:
            continue  # its raw_items error is already recorded
        try:
            item = raw_store.read(key)
        except ItemFileError as exc:
            errors[key] = str(exc)
            continue
        doc = extract_document(item.html, item.url)
        if not doc.text.strip():
            errors[key] = "page has no main text after boilerplate removal"
            continue
        title = doc.title or item.title
        rows.append(
            (
                key,
                item.url,
                title,
                doc.text,
                ids.content_hash(doc.text),
                doc.word_count,
                list(doc.headings),
                item.fetched_at,
            )
        )
    # Staged, not published: the embeddings stage swaps document, chunks and vectors in
    # together. Every key's staged row is replaced, so a failed item leaves no stale one.
    duckdb.store_stage(
        "documents", keys, "staged_documents", DOC_COLUMNS, rows, keys, errors, context.run_id
    )
    preview = rows[0][3][:PREVIEW_CHARS] if rows else "(none)"
    return dg.MaterializeResult(
        metadata={
            **_common_metadata(keys, errors, started),
            "documents": dg.MetadataValue.int(len(rows)),
            "words": dg.MetadataValue.int(sum(r[5] for r in rows)),
            "preview": dg.MetadataValue.md(f"**{rows[0][2]}**\n\n{preview}" if rows else preview),
        }
    )


CHUNK_COLUMNS = (
    "chunk_id",
    "item_id",
    "chunk_index",
    "heading",
    "text",
    "token_count",
    "content_hash",
)


@_item_asset(kinds={"python", "duckdb"}, deps=[documents])
def chunks(
    context: dg.AssetExecutionContext,
    chunker: TokenChunker,
    duckdb: DuckDBStore,
    raw_store: RawItemStore,
) -> dg.MaterializeResult:
    """Heading-aware chunks that fit the embedding model's max_seq_length, with stable ids."""
    started = time.monotonic()
    keys = batch_keys(context, raw_store)
    limit = chunker.max_tokens
    docs = _select(
        duckdb,
        f"SELECT item_id, title, text, content_hash FROM staged_documents WHERE {_in_list()}",
        keys,
    )
    rows, errors, chunked = [], {}, []
    for item_id, title, text, content_hash in docs:
        try:
            pieces = chunker.chunk(text, title)
        except Exception as exc:  # one pathological document must not stop the batch
            errors[item_id] = f"chunking failed: {type(exc).__name__}: {exc}"
            continue
        chunked.append(item_id)
        for piece in pieces:
            rows.append(
                (
                    ids.chunk_id(item_id, piece.index, piece.text),
                    item_id,
                    piece.index,
                    piece.heading,
                    piece.text,
                    piece.token_count,
                    content_hash,
                )
            )
    duckdb.store_stage(
        "chunks", keys, "staged_chunks", CHUNK_COLUMNS, rows, keys, errors, context.run_id
    )
    tokens = [r[5] for r in rows]
    return dg.MaterializeResult(
        metadata={
            **_common_metadata(keys, errors, started),
            "chunks": dg.MetadataValue.int(len(rows)),
            "max_tokens_per_chunk": dg.MetadataValue.int(limit),
            "mean_tokens": dg.MetadataValue.float(
                round(sum(tokens) / len(tokens), 1) if tokens else 0.0
            ),
            "largest_chunk_tokens": dg.MetadataValue.int(max(tokens, default=0)),
            "tokenizer": chunker.model,
            "preview": dg.MetadataValue.md(rows[0][4][:PREVIEW_CHARS] if rows else "(none)"),
        }
    )


def _store_vectors(
    duckdb: DuckDBStore, group: list[tuple], vectors: dict, cached: dict, info, fingerprint: str
) -> None:
    """Publish the group's items: their staged document and chunks with these vectors
    (computed or reused), all in one transaction."""
    out = [
        (
            r[0], r[1], info.name, fingerprint,
            vectors[r[0]] if r[0] in vectors else list(cached[r[0]]),
        )
        for r in group
    ]  # fmt: skip
    dim = len(out[0][4]) if out else info.dimension
    duckdb.publish(sorted({r[1] for r in group}), DOC_COLUMNS, CHUNK_COLUMNS, out, dim)


def _observe_items(
    context: dg.AssetExecutionContext, duckdb: DuckDBStore, keys: Sequence[str], model: str
) -> None:
    """Per-partition metadata in the UI: a run materialises many partitions with one
    MaterializeResult, so each item's own figures go in an observation of its partition."""
    if not keys:
        return
    rows = _select(
        duckdb,
        "SELECT d.item_id, d.title, d.url, d.word_count, "
        " (SELECT count(*) FROM chunks c WHERE c.item_id = d.item_id), "
        " (SELECT count(*) FROM embeddings e WHERE e.item_id = d.item_id), "
        " (SELECT c.text FROM chunks c WHERE c.item_id = d.item_id AND c.chunk_index = 0) "
        f"FROM documents d WHERE d.{_in_list()}",
        keys,
    )
    error_rows = _select(
        duckdb, f"SELECT item_id, stage, error FROM ingest_errors WHERE {_in_list()}", keys
    )
    errors = {item_id: f"{stage}: {message}" for item_id, stage, message in error_rows}
    found = {row[0] for row in rows}
    for item_id, title, url, words, n_chunks, n_vectors, first in rows:
        context.log_event(
            dg.AssetObservation(
                asset_key=context.asset_key,
                partition=item_id,
                metadata={
                    "title": title or "",
                    "url": dg.MetadataValue.url(url),
                    "words": dg.MetadataValue.int(words or 0),
                    "chunks": dg.MetadataValue.int(n_chunks),
                    "vectors": dg.MetadataValue.int(n_vectors),
                    "model": model,
                    "preview": dg.MetadataValue.md((first or "")[:PREVIEW_CHARS]),
                    "error": errors.get(item_id, "none"),
                },
            )
        )
    for item_id in keys:
        if item_id not in found:
            context.log_event(
                dg.AssetObservation(
                    asset_key=context.asset_key,
                    partition=item_id,
                    metadata={"error": errors.get(item_id, "no document stored"), "vectors": 0},
                )
            )


def _groups_of_whole_items(rows: list[tuple], first: int, size: int) -> list[list[tuple]]:
    """(chunk_id, item_id, text) rows in groups of whole items: the first ~first, then ~size."""
    groups, current = [], []
    for index, row in enumerate(rows):
        current.append(row)
        last_of_item = index + 1 == len(rows) or rows[index + 1][1] != row[1]
        if last_of_item and len(current) >= (size if groups else first):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


@_item_asset(kinds={"pytorch", "duckdb"}, deps=[chunks])
def embeddings(
    context: dg.AssetExecutionContext,
    embedder: SentenceTransformerEmbedder,
    duckdb: DuckDBStore,
    raw_store: RawItemStore,
    chunker: TokenChunker,
) -> dg.MaterializeResult:
    """Normalised sentence-transformers vectors, one per chunk, batched across the run's items."""
    started = time.monotonic()
    keys = batch_keys(context, raw_store)
    info = embedder.info
    fingerprint = index_fingerprint(
        embedder.model,
        embedder.dtype,
        chunker.chunk_size_tokens,
        chunker.chunk_overlap_tokens,
        chunker.context_header,
        chunker.min_tokens,
    )
    rows = _select(
        duckdb,
        f"SELECT chunk_id, item_id, text FROM staged_chunks WHERE {_in_list()} "
        "ORDER BY item_id, chunk_index",
        keys,
    )
    cached = {}
    if rows:
        # An unchanged chunk keeps its id, so its stored vector is reused, never recomputed
        # (only one made under the same index fingerprint: same weights, dtype, chunking).
        with duckdb.connection() as con:
            if store.table_exists(con, "embeddings"):
                cached = dict(
                    con.execute(
                        f"SELECT chunk_id, embedding FROM embeddings WHERE fingerprint = ? "
                        f"AND {_in_list('chunk_id')}",
                        [fingerprint, [r[0] for r in rows]],
                    ).fetchall()
                )
    embedded = reused = 0
    first_stored_at = None
    where = ""
    encode_s = 0.0
    groups = _groups_of_whole_items(rows, EMBED_FIRST_GROUP_CHUNKS, EMBED_WRITE_GROUP_CHUNKS)
    todos = [[r for r in group if r[0] not in cached] for group in groups]

    def encode(todo: list[tuple]) -> tuple:
        started_at = time.monotonic()
        matrix, computed = embedder.embed([r[2] for r in todo]) if todo else (None, "")
        return matrix, computed, time.monotonic() - started_at

    # One worker encodes group N+1 while this thread commits group N: the model never
    # waits for DuckDB.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool:
        futures = [pool.submit(encode, todo) for todo in todos]
        for group, todo, future in zip(groups, todos, futures, strict=True):
            matrix, computed, seconds = future.result()
            where = computed or where
            encode_s += seconds
            vectors = {r[0]: matrix[i].tolist() for i, r in enumerate(todo)} if todo else {}
            _store_vectors(duckdb, group, vectors, cached, info, fingerprint)
            embedded += len(todo)
            reused += len(group) - len(todo)
            first_stored_at = first_stored_at or time.time()
    # Items of the batch without staged chunks (their document or chunking failed) keep
    # their published version whole: a broken re-fetch never loses stored data.
    published = sorted({r[1] for r in rows})
    duckdb.set_files_state(published, "stored", fingerprint)
    duckdb.set_files_state(sorted(set(keys) - set(published)), "error", fingerprint)
    _observe_items(context, duckdb, keys, info.name)
    return dg.MaterializeResult(
        metadata={
            ITEMS_METADATA: dg.MetadataValue.int(len(keys)),
            "embeddings": dg.MetadataValue.int(len(rows)),
            EMBEDDED_METADATA: dg.MetadataValue.int(embedded),
            REUSED_METADATA: dg.MetadataValue.int(reused),
            "model": info.name,
            "index_fingerprint": fingerprint,
            "dtype": embedder.dtype,
            "dimension": dg.MetadataValue.int(info.dimension or 0),
            "computed": where or "nothing to embed",
            "encode_s": dg.MetadataValue.float(round(encode_s, 3)),
            "chunks_per_s": dg.MetadataValue.float(
                round(embedded / encode_s, 1) if encode_s else 0.0
            ),
            "elapsed_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
            # Epoch seconds of the first commit of this run: time-to-first-embedding figures.
            FIRST_STORED_AT_METADATA: dg.MetadataValue.float(first_stored_at or 0.0),
        }
    )


def ingest_definitions(settings: Settings) -> dg.Definitions:
    """The ingestion area: raw_items -> documents -> chunks -> embeddings, the checks on the
    vectors, the job the sensor launches, and the chunker and embedder resources."""
    from rag_assets.checks import embedding_checks  # checks.py imports this module's assets

    return dg.Definitions(
        assets=[raw_items, documents, chunks, embeddings],
        asset_checks=embedding_checks,
        jobs=[ingest_job],
        resources={
            "chunker": TokenChunker(
                model=settings.embedding_model,
                chunk_size_tokens=settings.chunk_size_tokens,
                chunk_overlap_tokens=settings.chunk_overlap_tokens,
                context_header=settings.chunk_context_header,
                min_tokens=settings.chunk_min_tokens,
            ),
            "embedder": SentenceTransformerEmbedder.from_settings(settings),
        },
    )
