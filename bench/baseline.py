"""The plain one-process baseline: crawl, extract, chunk, embed, store; no Dagster.

    python -m bench.baseline --start-url URL --json out.json

It uses the platform's own code (the ``python -m crawler`` subprocess, ``extract_document``,
``rag_core.chunking``, ``rag_core.embedders``, ``rag_core.stores``) and the same settings
(``DATA_DIR``, ``DUCKDB_PATH``, ``CRAWL_CONCURRENCY``, ``EMBEDDING_*``, ``CHUNK_*``), so it
stores the same rows as the platform, with the same default dtype (``EMBEDDING_DTYPE=auto``).
It does what a careful plain script does: the model loads while the crawl subprocess runs,
then every page is ingested after the crawl, and vectors are committed every ``GROUP_CHUNKS``
chunks.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from rag_app.status import item_keys_on_disk
from rag_core import ids
from rag_core.chunking import ModelTokenizer, chunk_document, max_chunk_tokens
from rag_core.embedders import sentence_transformers as embedding
from rag_core.extraction import extract_document
from rag_core.fingerprint import settings_fingerprint
from rag_core.items import ItemFileError, item_file_name, read_item_file
from rag_core.settings import PROJECT_ROOT, load_settings
from rag_core.stores import duckdb_store as store

GROUP_CHUNKS = 256

RAW_COLUMNS = (
    "item_id", "url", "requested_url", "status", "content_type", "title", "fetched_at",
    "html_chars", "truncated", "links", "file_path",
)  # fmt: skip
DOC_COLUMNS = (
    "item_id", "url", "title", "text", "content_hash", "word_count", "headings", "fetched_at",
)  # fmt: skip
CHUNK_COLUMNS = (
    "chunk_id", "item_id", "chunk_index", "heading", "text", "token_count", "content_hash",
)  # fmt: skip


def crawl_command(settings, start_urls: list[str], stats_file: Path) -> list[str]:
    """The crawler command line the platform's ScrapyCrawler resource builds, minus JOBDIR."""
    cmd = [sys.executable, "-m", "crawler", "--raw-dir", str(settings.raw_dir)]
    for url in start_urls:
        cmd += ["--start-url", url]
    for domain in settings.allowed_domains:
        cmd += ["--allowed-domain", domain]
    cmd += [
        "--max-pages", str(settings.closespider_pagecount),
        "--depth-limit", str(settings.crawl_depth_limit),
        "--max-page-chars", str(settings.max_page_chars),
        "--concurrency", str(settings.crawl_concurrency),
        "--log-level", settings.log_level,
        "--stats-file", str(stats_file),
    ]  # fmt: skip
    return cmd


def ingest(settings, model, tokenizer, keys: list[str], times: dict) -> dict:
    """Extract, chunk, embed and store every item of ``keys``; fills ``times`` with phases."""
    limit = max_chunk_tokens(tokenizer, settings.chunk_size_tokens)
    raw_rows, doc_rows, chunk_rows, errors = [], [], [], {}
    t = time.monotonic()
    for key in keys:
        path = settings.raw_dir / item_file_name(key)
        try:
            item = read_item_file(path)
        except ItemFileError as exc:
            errors[key] = str(exc)
            continue
        raw_rows.append(
            (
                item.item_id, item.url, item.requested_url, item.status, item.content_type,
                item.title, item.fetched_at, len(item.html), item.truncated, list(item.links),
                str(path),
            )
        )  # fmt: skip
        doc = extract_document(item.html, item.url)
        if not doc.text.strip():
            errors[key] = "page has no main text after boilerplate removal"
            continue
        content_hash = ids.content_hash(doc.text)
        title = doc.title or item.title
        doc_rows.append(
            (
                key, item.url, title, doc.text, content_hash, doc.word_count,
                list(doc.headings), item.fetched_at,
            )
        )  # fmt: skip
    times["read_extract_s"] = time.monotonic() - t
    t = time.monotonic()
    for key, _url, title, text, content_hash, *_ in doc_rows:
        for piece in chunk_document(text, tokenizer, limit, settings.chunk_overlap_tokens, title):
            chunk_rows.append(
                (
                    ids.chunk_id(key, piece.index, piece.text), key, piece.index, piece.heading,
                    piece.text, piece.token_count, content_hash,
                )
            )  # fmt: skip
    times["chunk_s"] = time.monotonic() - t
    t = time.monotonic()
    info = embedding.resolve_model(settings.embedding_model)
    fingerprint = settings_fingerprint(settings)
    with store.connect(settings.duckdb_path) as con:
        store.ensure_schema(con, info.dimension)
        with store.transaction(con):
            for table, columns, rows in (
                ("raw_items", RAW_COLUMNS, raw_rows),
                ("documents", DOC_COLUMNS, doc_rows),
                ("chunks", CHUNK_COLUMNS, chunk_rows),
            ):
                store.delete_items(con, table, [r[1] if table == "chunks" else r[0] for r in rows])
                store.insert_rows(con, table, columns, rows)
    times["store_docs_s"] = time.monotonic() - t
    encode_s = store_s = 0.0
    first_stored_at = None
    for start in range(0, len(chunk_rows), GROUP_CHUNKS):
        group = chunk_rows[start : start + GROUP_CHUNKS]
        t = time.monotonic()
        vectors = embedding.encode(model, [r[4] for r in group], settings.embedding_batch_size)
        encode_s += time.monotonic() - t
        t = time.monotonic()
        rows = [(r[0], r[1], info.name, fingerprint, vectors[i]) for i, r in enumerate(group)]
        # The platform's own insert (numpy scans): vectors as Python list parameters cost one
        # DuckDB value per float, 138 of the script's 221 s at N=500 with DuckDB 1.5.5, which
        # made the baseline slow and P1 flatter the platform.
        with store.connect(settings.duckdb_path) as con, store.transaction(con):
            store.insert_vectors(con, rows)
        store_s += time.monotonic() - t
        first_stored_at = first_stored_at or time.time()
    times["encode_s"] = encode_s
    times["store_embeddings_s"] = store_s
    return {
        "pages": len(raw_rows),
        "documents": len(doc_rows),
        "chunks": len(chunk_rows),
        "embeddings": len(chunk_rows),
        "errors": len(errors),
        "first_stored_at": first_stored_at,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    parser.add_argument("--start-url", action="append", required=True)
    parser.add_argument("--json", type=Path, required=True, help="write the summary here")
    args = parser.parse_args(argv)
    settings = load_settings()
    wall_start = time.time()
    settings.raw_dir.mkdir(parents=True, exist_ok=True)
    stats_file = settings.data_dir / "crawl" / "baseline_crawl_stats.json"
    log_path = settings.data_dir / "logs" / "baseline-crawl.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    with open(log_path, "w") as log:
        crawl = subprocess.Popen(
            crawl_command(settings, args.start_url, stats_file),
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        crawl_done: list[float] = []
        waiter = threading.Thread(target=lambda: crawl_done.append((crawl.wait(), time.time())[1]))
        waiter.start()
        # A plain script loads its model while the crawl subprocess downloads pages.
        t = time.monotonic()
        model = embedding.load_model(
            settings.embedding_model, settings.embedding_dtype, settings.torch_num_threads
        )
        tokenizer = ModelTokenizer.from_model_dir(
            embedding.resolve_model(settings.embedding_model).path
        )
        times["model_load_s"] = time.monotonic() - t
        waiter.join()
        code = crawl.returncode
    crawl_end = time.time()  # the model is loaded and the crawl is over: ingestion starts
    times["crawl_s"] = crawl_done[0] - wall_start
    if code != 0:
        print(f"baseline: the crawl exited with code {code}; see {log_path}", file=sys.stderr)
        return 1
    keys = item_keys_on_disk(settings.raw_dir)
    mtimes = [(settings.raw_dir / item_file_name(k)).stat().st_mtime for k in keys]
    keys = [k for _, k in sorted(zip(mtimes, keys, strict=True))]  # crawl order
    result = ingest(settings, model, tokenizer, keys, times)
    end = time.time()
    times["ingest_s"] = end - crawl_end
    first_file = min(mtimes) if mtimes else None
    summary = {
        **result,
        "wall_time_s": round(end - wall_start, 2),
        "first_file_to_first_embedding_s": (
            round(result["first_stored_at"] - first_file, 2)
            if result["first_stored_at"] and first_file
            else None
        ),
        "dagster_runs": 0,
        # EMBEDDING_DTYPE as resolved here (auto: bfloat16 on CPUs with native BF16), the
        # same as the platform's, so P1 compares the two with the same fast path.
        "dtype": embedding.resolve_dtype(settings.embedding_dtype),
        "times": {k: round(v, 3) for k, v in times.items()},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
