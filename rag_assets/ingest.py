"""Item-partitioned ingestion: raw_items -> documents -> chunks -> embeddings.

Every asset handles all partitions of its run at once (``BackfillPolicy.single_run``):
a run carries the batch of items the sensor found, and the embedding model
encodes all their chunks in shared batches. raw_items writes its table; documents and
chunks write staging tables, and embeddings swaps each item's document, chunks and
vectors in together, in one transaction (Store.publish): readers see a page's old
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
from rag_core import ids
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
from rag_core.stores import Store
from resources.chunker import TokenChunker
from resources.duckdb_store import DuckDBStore
from resources.embedder import EmbedderResource
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
    store = duckdb.get_store()
    store.mark_files_started(mtimes)
    rows, errors = [], {}
    for key in keys:
        try:
            item = raw_store.read(key)
        except ItemFileError as exc:
            errors[key] = str(exc)
            continue
        # In the column order of rag_core.stores.RAW_COLUMNS.
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
    store.store_raw_items(keys, rows, errors, context.run_id)
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


@_item_asset(kinds={"python", "duckdb"}, deps=[raw_items])
def documents(
    context: dg.AssetExecutionContext, raw_store: RawItemStore, duckdb: DuckDBStore
) -> dg.MaterializeResult:
    """Main text of each page (boilerplate removed, structure kept) with its content hash."""
    started = time.monotonic()
    keys = batch_keys(context, raw_store)
    store = duckdb.get_store()
    valid = store.raw_item_ids(keys)
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
        # In the column order of rag_core.stores.DOC_COLUMNS.
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
    store.stage_documents(keys, rows, errors, context.run_id)
    preview = rows[0][3][:PREVIEW_CHARS] if rows else "(none)"
    return dg.MaterializeResult(
        metadata={
            **_common_metadata(keys, errors, started),
            "documents": dg.MetadataValue.int(len(rows)),
            "words": dg.MetadataValue.int(sum(r[5] for r in rows)),
            "preview": dg.MetadataValue.md(f"**{rows[0][2]}**\n\n{preview}" if rows else preview),
        }
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
    store = duckdb.get_store()
    docs = store.staged_documents(keys)
    rows, errors, chunked = [], {}, []
    for item_id, title, text, content_hash in docs:
        try:
            pieces = chunker.chunk(text, title)
        except Exception as exc:  # one pathological document must not stop the batch
            errors[item_id] = f"chunking failed: {type(exc).__name__}: {exc}"
            continue
        chunked.append(item_id)
        for piece in pieces:
            # In the column order of rag_core.stores.CHUNK_COLUMNS.
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
    store.stage_chunks(keys, rows, errors, context.run_id)
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
            "tokenizer": chunker.embedder.get_embedder().name,
            "preview": dg.MetadataValue.md(rows[0][4][:PREVIEW_CHARS] if rows else "(none)"),
        }
    )


def _store_vectors(
    store: Store, group: list[tuple], vectors: dict, cached: dict, info, fingerprint: str
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
    store.publish(sorted({r[1] for r in group}), out, dim)


def _observe_items(
    context: dg.AssetExecutionContext, store: Store, keys: Sequence[str], model: str
) -> None:
    """Per-partition metadata in the UI: a run materialises many partitions with one
    MaterializeResult, so each item's own figures go in an observation of its partition."""
    if not keys:
        return
    rows = store.item_summaries(keys)
    error_rows = store.item_errors(keys)
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
    embedder: EmbedderResource,
    duckdb: DuckDBStore,
    raw_store: RawItemStore,
    chunker: TokenChunker,
) -> dg.MaterializeResult:
    """Normalised vectors of the configured embedder, one per chunk, batched across items."""
    started = time.monotonic()
    keys = batch_keys(context, raw_store)
    model = embedder.get_embedder()
    fingerprint = index_fingerprint(
        model,
        chunker.chunk_size_tokens,
        chunker.chunk_overlap_tokens,
        chunker.context_header,
        chunker.min_tokens,
    )
    store = duckdb.get_store()
    rows = store.staged_chunks(keys)
    # An unchanged chunk keeps its id, so its stored vector is reused, never recomputed
    # (only one made under the same index fingerprint: same weights, dtype, chunking).
    cached = store.vectors([r[0] for r in rows], fingerprint) if rows else {}
    embedded = reused = 0
    first_stored_at = None
    where = ""
    encode_s = 0.0
    groups = _groups_of_whole_items(rows, EMBED_FIRST_GROUP_CHUNKS, EMBED_WRITE_GROUP_CHUNKS)
    todos = [[r for r in group if r[0] not in cached] for group in groups]

    def encode(todo: list[tuple]) -> tuple:
        started_at = time.monotonic()
        matrix, computed = model.embed([r[2] for r in todo]) if todo else (None, "")
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
            _store_vectors(store, group, vectors, cached, model, fingerprint)
            embedded += len(todo)
            reused += len(group) - len(todo)
            first_stored_at = first_stored_at or time.time()
    # Items of the batch without staged chunks (their document or chunking failed) keep
    # their published version whole: a broken re-fetch never loses stored data.
    published = sorted({r[1] for r in rows})
    store.set_files_state(published, "stored", fingerprint)
    store.set_files_state(sorted(set(keys) - set(published)), "error", fingerprint)
    _observe_items(context, store, keys, model.name)
    return dg.MaterializeResult(
        metadata={
            ITEMS_METADATA: dg.MetadataValue.int(len(keys)),
            "embeddings": dg.MetadataValue.int(len(rows)),
            EMBEDDED_METADATA: dg.MetadataValue.int(embedded),
            REUSED_METADATA: dg.MetadataValue.int(reused),
            **model.describe(),
            "index_fingerprint": fingerprint,
            "dimension": dg.MetadataValue.int(model.dimension),
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


def ingest_definitions(settings: Settings, job=ingest_job) -> dg.Definitions:
    """The ingestion area: raw_items -> documents -> chunks -> embeddings, the checks on the
    vectors, the job the sensor launches (``job``: the distributed profile's runs its steps on
    Celery workers), and the chunker and embedder resources."""
    from rag_assets.checks import embedding_checks  # checks.py imports this module's assets

    embedder = EmbedderResource.from_settings(settings)
    return dg.Definitions(
        assets=[raw_items, documents, chunks, embeddings],
        asset_checks=embedding_checks,
        jobs=[job],
        resources={
            # The chunker counts tokens with the embedder's own tokenizer.
            "chunker": TokenChunker(
                embedder=embedder,
                chunk_size_tokens=settings.chunk_size_tokens,
                chunk_overlap_tokens=settings.chunk_overlap_tokens,
                context_header=settings.chunk_context_header,
                min_tokens=settings.chunk_min_tokens,
            ),
            "embedder": embedder,
        },
    )
