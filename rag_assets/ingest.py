"""Item-partitioned ingestion: raw_items -> documents -> chunks -> embeddings, in one step.

The four assets are one multi-asset (``ingest_batch``): a run carries the batch of items the
sensor found, and the step streams it in sub-batches of ``SUB_BATCH_ITEMS`` items through
read -> extract -> chunk -> encode -> publish. The encoder works in a background thread on
one sub-batch while this thread prepares the next and publishes the one before, so the model
starts within a second of the step starting and never waits for the stages before it (the
four separate steps it replaces kept the model idle while each one went through the whole
batch). At most ``PIPELINE_DEPTH`` sub-batches are held at once, so memory is bounded by the
sub-batch size, not the batch size.

Each sub-batch writes raw_items rows and stages documents and chunks; the publish swaps each
item's document, chunks and vectors in together, in one transaction (Store.publish): readers
see a page's old version or its new one, never neither and never a mix. Every write replaces
the sub-batch's rows, so every rerun is safe. A broken item is recorded in ``ingest_errors``
(item, stage, error) and skipped; it never fails the rest of its batch.

The UI still shows the four assets, their lineage and their per-partition status: each
sub-batch logs the raw_items, documents and chunks materialisations of its partitions as soon
as it is published (so those events are written while the model encodes the next one), and
the step's one output, embeddings, materialises every partition of the run at its end (so
graph_pages and the asset checks still follow it in the run).
"""

import time
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import dagster as dg

from rag_assets.jobs import ingest_job
from rag_assets.partitions import items_partitions
from rag_core import ids
from rag_core.batches import read_manifest
from rag_core.constants import (
    CHUNKS_ASSET,
    CRAWLED_PAGES_ASSET,
    DOCUMENTS_ASSET,
    EMBEDDED_METADATA,
    EMBEDDINGS_ASSET,
    FIRST_STORED_AT_METADATA,
    INGEST_STEP,
    ITEMS_METADATA,
    ITEMS_PARTITIONS,
    MANIFEST_TAG,
    RAW_ITEMS_ASSET,
    REUSED_METADATA,
)
from rag_core.extraction import extract_document
from rag_core.fingerprint import index_fingerprint
from rag_core.items import CrawledItem, ItemFileError
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
# Items per sub-batch: about 300 chunks, enough for the encoder to sort by length and fill
# its batches, and few enough that a batch of 50,000 pages holds only a few hundred texts.
SUB_BATCH_ITEMS = 32
# The first sub-batch is small so that the first vectors are searchable within a second or two.
FIRST_SUB_BATCH_ITEMS = 4
# Sub-batches held at once: one being encoded while the next is prepared (read, extracted,
# chunked, staged). Items held from reading to publishing never exceed
# PIPELINE_DEPTH * SUB_BATCH_ITEMS, whatever the run's batch size.
PIPELINE_DEPTH = 2


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


def sub_batches(keys: Sequence[str], first: int, size: int) -> Iterator[list[str]]:
    """``keys`` in order, ``first`` of them, then ``size`` at a time."""
    start = 0
    while start < len(keys):
        step = first if start == 0 else size
        yield list(keys[start : start + step])
        start += step


class HeldItems:
    """Counts the items between reading and publishing: the test of bounded memory reads the
    peak (an item's file, text, chunks and vectors are alive only in that window)."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def hold(self, n: int) -> None:
        self.now += n
        self.peak = max(self.peak, self.now)

    def release(self, n: int) -> None:
        self.now -= n


@dataclass
class Prepared:
    """One sub-batch read, extracted, chunked and staged, waiting for its vectors."""

    keys: list[str]
    pages: dict[str, tuple[str, str]]  # item_id -> (url, title) of the items read
    words: dict[str, int]  # item_id -> words of its document, for those extracted
    chunks: list[tuple]  # staged chunk rows (CHUNK_COLUMNS order), by item then index
    cached: dict[str, list[float]]  # reusable stored vectors by chunk_id
    todo: list[tuple]  # chunk rows to encode
    errors: dict[str, tuple[str, str]] = field(default_factory=dict)  # item -> (stage, msg)


@dataclass
class Totals:
    """Figures over the whole run, for the embeddings materialisation's metadata."""

    errors: dict[str, int] = field(default_factory=dict)  # by stage
    error_items: dict[str, str] = field(default_factory=dict)
    stored_raw: int = 0
    truncated: int = 0
    documents: int = 0
    words: int = 0
    chunks: int = 0
    # Token counts as running figures: nothing per chunk outlives its sub-batch.
    tokens_sum: int = 0
    tokens_max: int = 0
    embedded: int = 0
    reused: int = 0
    published: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    preview: str = ""

    def add_s(self, what: str, since: float) -> float:
        now = time.monotonic()
        self.seconds[what] = self.seconds.get(what, 0.0) + now - since
        return now


def _raw_row(item: CrawledItem, path: str) -> tuple:
    # In the column order of rag_core.stores.RAW_COLUMNS.
    return (
        item.item_id, item.url, item.requested_url, item.status, item.content_type, item.title,
        item.fetched_at, len(item.html), item.truncated, list(item.links), path,
    )  # fmt: skip


def prepare(
    keys: list[str],
    raw_store: RawItemStore,
    store: Store,
    chunker: TokenChunker,
    fingerprint: str,
    run_id: str,
    totals: Totals,
) -> Prepared:
    """Read, extract and chunk ``keys``; write their raw_items rows and stage their documents
    and chunks (each stage replaces the sub-batch's rows and errors)."""
    t = time.monotonic()
    # The file versions this run ingests (read before the files): reconciliation compares
    # them with what is on disk once the run is over.
    mtimes = {}
    for key in keys:
        try:
            mtimes[key] = raw_store.path_for(key).stat().st_mtime_ns
        except OSError:
            pass  # a missing file is reported as an error below
    items, raw_rows, raw_errors = {}, [], {}
    for key in keys:
        try:
            item = raw_store.read(key)
        except ItemFileError as exc:
            raw_errors[key] = str(exc)
            continue
        items[key] = item
        raw_rows.append(_raw_row(item, str(raw_store.path_for(key))))
    t = totals.add_s("read_s", t)

    docs, doc_errors = {}, {}
    for key, item in items.items():
        doc = extract_document(item.html, item.url)
        if not doc.text.strip():
            doc_errors[key] = "page has no main text after boilerplate removal"
            continue
        # In the column order of rag_core.stores.DOC_COLUMNS.
        docs[key] = (
            key, item.url, doc.title or item.title, doc.text, ids.content_hash(doc.text),
            doc.word_count, list(doc.headings), item.fetched_at,
        )  # fmt: skip
    t = totals.add_s("extract_s", t)

    chunk_rows, chunk_errors = [], {}
    for key, doc in docs.items():
        try:
            pieces = chunker.chunk(doc[3], doc[2])
        except Exception as exc:  # one pathological document must not stop the batch
            chunk_errors[key] = f"chunking failed: {type(exc).__name__}: {exc}"
            continue
        for piece in pieces:
            # In the column order of rag_core.stores.CHUNK_COLUMNS.
            chunk_rows.append(
                (
                    ids.chunk_id(key, piece.index, piece.text), key, piece.index,
                    piece.heading, piece.text, piece.token_count, doc[4],
                )
            )  # fmt: skip
    t = totals.add_s("chunk_s", t)

    # One connection for the sub-batch's writes, each its own transaction; documents and
    # chunks are staged, not published: the publish swaps them in with their vectors.
    with store.session(read_only=False) as session:
        session.mark_files_started(mtimes)
        session.store_raw_items(keys, raw_rows, raw_errors, run_id)
        session.stage_documents(keys, list(docs.values()), doc_errors, run_id)
        session.stage_chunks(keys, chunk_rows, chunk_errors, run_id)
        # An unchanged chunk keeps its id, so its stored vector is reused, never recomputed
        # (only one made under the same index fingerprint: same weights, dtype, chunking).
        cached = session.vectors([r[0] for r in chunk_rows], fingerprint) if chunk_rows else {}
    totals.add_s("stage_s", t)

    errors = {k: ("raw_items", m) for k, m in raw_errors.items()}
    errors |= {k: ("documents", m) for k, m in doc_errors.items()}
    errors |= {k: ("chunks", m) for k, m in chunk_errors.items()}
    for stage, _ in errors.values():
        totals.errors[stage] = totals.errors.get(stage, 0) + 1
    totals.error_items |= {k: f"{stage}: {m}" for k, (stage, m) in errors.items()}
    totals.stored_raw += len(raw_rows)
    totals.truncated += sum(1 for r in raw_rows if r[8])
    totals.documents += len(docs)
    totals.words += sum(d[5] for d in docs.values())
    totals.chunks += len(chunk_rows)
    totals.tokens_sum += sum(r[5] for r in chunk_rows)
    totals.tokens_max = max([totals.tokens_max, *(r[5] for r in chunk_rows)])
    if not totals.preview and docs:
        first = next(iter(docs.values()))
        totals.preview = f"**{first[2]}**\n\n{first[3][:PREVIEW_CHARS]}"
    todo = [r for r in chunk_rows if r[0] not in cached]
    pages = {key: (item.url, item.title or "") for key, item in items.items()}
    words = {key: doc[5] for key, doc in docs.items()}
    return Prepared(keys, pages, words, chunk_rows, cached, todo, errors)


def publish(
    batch: Prepared, vectors: dict, store: Store, model_name: str, dimension: int,
    fingerprint: str,
) -> list[str]:  # fmt: skip
    """Publish the sub-batch's items that have chunks: staged document and chunks with these
    vectors (computed or reused), in one transaction. Items without staged chunks (their file,
    document or chunking failed) keep their published version whole: a broken re-fetch never
    loses stored data. Returns the published item ids."""
    out = [
        (r[0], r[1], model_name, fingerprint,
         vectors[r[0]] if r[0] in vectors else list(batch.cached[r[0]]))
        for r in batch.chunks
    ]  # fmt: skip
    published = sorted({r[1] for r in batch.chunks})
    with store.session(read_only=False) as session:
        if out:
            session.publish(published, out, len(out[0][4]) or dimension)
        session.set_files_state(published, "stored", fingerprint)
        session.set_files_state(
            sorted(set(batch.keys) - set(published)), "error", fingerprint
        )
    return published


def _error_text(batch: Prepared, key: str) -> str:
    stage_error = batch.errors.get(key)
    return f"{stage_error[0]}: {stage_error[1]}"[:500] if stage_error else "none"


def log_upstream_materializations(
    context: dg.AssetExecutionContext, batch: Prepared, published: set[str]
) -> None:
    """raw_items, documents and chunks of each partition of ``batch``, with the item's own
    figures (the chunks one also says how many vectors the item has now, so a page's whole
    story is on its partitions without an extra observation event): written while the encoder
    works on the next sub-batch. The embeddings materialisations carry the run's figures only:
    ``add_asset_metadata(partition_key=...)`` reloads every dynamic partition key per call."""
    per_item_chunks: dict[str, int] = {}
    for row in batch.chunks:
        per_item_chunks[row[1]] = per_item_chunks.get(row[1], 0) + 1
    for key in batch.keys:
        page, error = batch.pages.get(key), _error_text(batch, key)
        raw_meta = {"error": error}
        if page is not None:
            raw_meta |= {"url": dg.MetadataValue.url(page[0]), "title": page[1]}
        events = (
            (RAW_ITEMS_ASSET, raw_meta),
            (DOCUMENTS_ASSET, {"words": batch.words.get(key, 0), "error": error}),
            (
                CHUNKS_ASSET,
                {
                    "chunks": per_item_chunks.get(key, 0),
                    "vectors": per_item_chunks.get(key, 0) if key in published else 0,
                    "error": error,
                },
            ),
        )
        for asset, meta in events:
            context.log_event(
                dg.AssetMaterialization(asset_key=asset, partition=key, metadata=meta)
            )


def _error_preview(errors: dict[str, str]) -> dg.MetadataValue:
    lines = [
        f"| `{key}` | {msg[:200].replace('|', '/')} |" for key, msg in list(errors.items())[:20]
    ]
    table = "| item | error |\n| --- | --- |\n" + "\n".join(lines) if lines else "no errors"
    return dg.MetadataValue.md(table)


@dg.multi_asset(
    name=INGEST_STEP,
    specs=[
        dg.AssetSpec(
            RAW_ITEMS_ASSET,
            deps=[CRAWLED_PAGES_ASSET],
            kinds={"json", "duckdb"},
            group_name=GROUP,
            description="Crawled pages, validated from their item files, as rows of the "
            "raw_items table.",
            # Materialised per partition by the step's log (log_upstream_materializations),
            # as each sub-batch is done, not by an output at the end.
            skippable=True,
        ),
        dg.AssetSpec(
            DOCUMENTS_ASSET,
            deps=[RAW_ITEMS_ASSET],
            kinds={"python", "duckdb"},
            group_name=GROUP,
            description="Main text of each page (boilerplate removed, structure kept) with "
            "its content hash.",
            skippable=True,
        ),
        dg.AssetSpec(
            CHUNKS_ASSET,
            deps=[DOCUMENTS_ASSET],
            kinds={"python", "duckdb"},
            group_name=GROUP,
            description="Heading-aware chunks that fit the embedding model's max_seq_length, "
            "with stable ids.",
            skippable=True,
        ),
        dg.AssetSpec(
            EMBEDDINGS_ASSET,
            deps=[CHUNKS_ASSET],
            kinds={"pytorch", "duckdb"},
            group_name=GROUP,
            description="Normalised vectors of the configured embedder, one per chunk, "
            "batched across items.",
        ),
    ],
    partitions_def=items_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=RETRY,
    can_subset=False,
)
def ingest_batch(
    context: dg.AssetExecutionContext,
    raw_store: RawItemStore,
    duckdb: DuckDBStore,
    chunker: TokenChunker,
    embedder: EmbedderResource,
) -> Iterator[dg.MaterializeResult]:
    """A batch of crawled pages streamed through raw_items, documents, chunks and embeddings."""
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
    totals = Totals()
    held = HeldItems()
    computed_where = ""
    first_stored_at = None
    first_encode_started = None
    items_read_at_first_encode = 0

    def encode(todo: list[tuple]) -> tuple:
        nonlocal first_encode_started, items_read_at_first_encode
        t0 = time.monotonic()
        if first_encode_started is None:
            first_encode_started = t0
            items_read_at_first_encode = items_read
        matrix, where = model.embed([r[4] for r in todo]) if todo else (None, "")
        return matrix, where, time.monotonic() - t0

    def finish(batch: Prepared, future: Future) -> None:
        nonlocal computed_where, first_stored_at
        t = time.monotonic()
        matrix, where, seconds = future.result()
        t = totals.add_s("wait_for_encoder_s", t)
        totals.seconds["encode_s"] = totals.seconds.get("encode_s", 0.0) + seconds
        computed_where = where or computed_where
        vectors = {r[0]: matrix[i].tolist() for i, r in enumerate(batch.todo)}
        published = publish(batch, vectors, store, model.name, model.dimension, fingerprint)
        first_stored_at = first_stored_at or time.time()
        t = totals.add_s("publish_s", t)
        totals.embedded += len(batch.todo)
        totals.reused += len(batch.chunks) - len(batch.todo)
        totals.published += len(published)
        log_upstream_materializations(context, batch, set(published))
        totals.add_s("log_events_s", t)
        held.release(len(batch.keys))

    # One worker encodes sub-batch N while this thread prepares N+1 and publishes N-1.
    pending: deque[tuple[Prepared, Future]] = deque()
    items_read = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool:
        for sub in sub_batches(keys, FIRST_SUB_BATCH_ITEMS, SUB_BATCH_ITEMS):
            held.hold(len(sub))
            batch = prepare(sub, raw_store, store, chunker, fingerprint, context.run_id, totals)
            items_read += len(sub)
            pending.append((batch, pool.submit(encode, batch.todo)))
            while len(pending) >= PIPELINE_DEPTH:
                finish(*pending.popleft())
        while pending:
            finish(*pending.popleft())

    errors = sum(totals.errors.values())
    if errors:
        context.log.warning(f"{errors} item(s) not ingested: {list(totals.error_items)[:5]}")
    encode_s = totals.seconds.get("encode_s", 0.0)
    yield dg.MaterializeResult(
        asset_key=EMBEDDINGS_ASSET,
        metadata={
            ITEMS_METADATA: dg.MetadataValue.int(len(keys)),
            "errors": dg.MetadataValue.int(errors),
            "errors_by_stage": dg.MetadataValue.json(totals.errors),
            "error_items": _error_preview(totals.error_items),
            "raw_items_stored": dg.MetadataValue.int(totals.stored_raw),
            "truncated_pages": dg.MetadataValue.int(totals.truncated),
            "documents": dg.MetadataValue.int(totals.documents),
            "words": dg.MetadataValue.int(totals.words),
            "chunks": dg.MetadataValue.int(totals.chunks),
            "max_tokens_per_chunk": dg.MetadataValue.int(chunker.max_tokens),
            "mean_tokens": dg.MetadataValue.float(
                round(totals.tokens_sum / totals.chunks, 1) if totals.chunks else 0.0
            ),
            "largest_chunk_tokens": dg.MetadataValue.int(totals.tokens_max),
            "embeddings": dg.MetadataValue.int(totals.chunks),
            EMBEDDED_METADATA: dg.MetadataValue.int(totals.embedded),
            REUSED_METADATA: dg.MetadataValue.int(totals.reused),
            "published_items": dg.MetadataValue.int(totals.published),
            **model.describe(),
            "index_fingerprint": fingerprint,
            "dimension": dg.MetadataValue.int(model.dimension),
            "computed": computed_where or "nothing to embed",
            "encode_s": dg.MetadataValue.float(round(encode_s, 3)),
            "chunks_per_s": dg.MetadataValue.float(
                round(totals.embedded / encode_s, 1) if encode_s else 0.0
            ),
            # Where this thread's time went (the encoder works beside it).
            **{
                name: dg.MetadataValue.float(round(value, 3))
                for name, value in sorted(totals.seconds.items())
                if name != "encode_s"
            },
            "first_encode_after_s": dg.MetadataValue.float(
                round(first_encode_started - started, 3) if first_encode_started else 0.0
            ),
            # Items read when the encoder got its first sub-batch: the model starts after the
            # first sub-batch, not after the whole batch went through the other stages.
            "items_read_at_first_encode": dg.MetadataValue.int(items_read_at_first_encode),
            "sub_batch_items": dg.MetadataValue.int(SUB_BATCH_ITEMS),
            # Items held between reading and publishing at the worst moment: bounded by
            # PIPELINE_DEPTH * SUB_BATCH_ITEMS, whatever the batch size.
            "peak_items_held": dg.MetadataValue.int(held.peak),
            "preview": dg.MetadataValue.md(totals.preview or "(none)"),
            "elapsed_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
            # Epoch seconds of the first commit of this run: time-to-first-embedding figures.
            FIRST_STORED_AT_METADATA: dg.MetadataValue.float(first_stored_at or 0.0),
        },
    )


def ingest_definitions(settings: Settings, job=ingest_job) -> dg.Definitions:
    """The ingestion area: raw_items -> documents -> chunks -> embeddings (one step), the
    checks on the vectors, the job the sensor launches (``job``: the distributed profile's
    runs its step on a Celery worker), and the chunker and embedder resources."""
    from rag_assets.checks import embedding_checks  # checks.py imports this module

    embedder = EmbedderResource.from_settings(settings)
    return dg.Definitions(
        assets=[ingest_batch],
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
