"""``model.encode`` alone on stored chunks, and the top-5 search results of fixed questions.

    python -m bench.encode_only --db rag.duckdb [--dtype auto|float32|bfloat16] --json out.json

Reads every chunk of a platform run's DuckDB (read-only), loads the model in ``--dtype``
(default ``auto``, the platform's own default: bfloat16 on CPUs with native BF16; the load is
timed apart), encodes all chunks in one ``encode`` call (rag_core.embedders.
sentence_transformers) with the platform's batch size, and ranks the chunks for
``QUESTIONS`` by cosine similarity. It also reports the largest difference between its
vectors and the stored ones (meaningful when both are of the same dtype).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from rag_core.embedders import sentence_transformers as embedding
from rag_core.settings import load_settings
from rag_core.stores import duckdb_store as store

# Fixed questions on the synthetic site's topics (demo_site/synthetic.py), for P8.
QUESTIONS = (
    "How do I rotate the credential of a connector endpoint?",
    "How can I restore a backup from a snapshot or restore point?",
    "What retry policy applies when a workflow task fails?",
    "How does the cache eviction policy decide which cache entry to remove?",
    "How do I configure an alert threshold on a dashboard metric?",
)
TOP_K = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.encode_only", description=__doc__)
    parser.add_argument("--db", type=Path, required=True)
    # auto: the platform's default (EMBEDDING_DTYPE=auto), so P4 compares like with like.
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    settings = load_settings()
    dtype = embedding.resolve_dtype(args.dtype)
    with store.connect(args.db, read_only=True, timeout_s=60) as con:
        rows = con.execute(
            "SELECT chunk_id, text FROM chunks ORDER BY item_id, chunk_index"
        ).fetchall()
        stored = {}
        if store.table_exists(con, "embeddings"):
            stored = dict(con.execute("SELECT chunk_id, embedding FROM embeddings").fetchall())
    ids_, texts = [r[0] for r in rows], [r[1] for r in rows]
    t = time.monotonic()
    model = embedding.load_model(settings.embedding_model, dtype, settings.torch_num_threads)
    # A warm model, as the platform's embedding server has: one untimed batch first, so
    # first-call allocations and kernel set-up (bfloat16 especially) are not counted.
    batch = settings.embedding_batch_size
    embedding.encode(model, texts[:batch] or ["warm-up"], batch)
    load_s = time.monotonic() - t
    t = time.monotonic()
    vectors = embedding.encode(model, texts, settings.embedding_batch_size)
    encode_s = time.monotonic() - t
    queries = embedding.encode(model, list(QUESTIONS), settings.embedding_batch_size)
    top, top10 = [], []
    if len(texts):
        scores = queries @ vectors.T  # rows are normalised: dot product = cosine
        for row in scores:
            order = np.argsort(-row, kind="stable")[: 2 * TOP_K]
            top.append([ids_[i] for i in order[:TOP_K]])
            top10.append([[ids_[i], round(float(row[i]), 5)] for i in order])
    max_diff = None
    if stored:  # in the platform's dtype: how close a plain encode comes to the stored rows
        diffs = [
            float(np.max(np.abs(np.asarray(stored[c], dtype=np.float32) - vectors[i])))
            for i, c in enumerate(ids_)
            if c in stored
        ]
        max_diff = max(diffs) if diffs else None
    summary = {
        "dtype": dtype,
        "chunks": len(texts),
        "load_s": round(load_s, 3),
        "encode_s": round(encode_s, 3),
        "chunks_per_s": round(len(texts) / encode_s, 2) if encode_s > 0 else None,
        "batch_size": settings.embedding_batch_size,
        "top5": top,
        "top10_scores": top10,
        "max_abs_diff_vs_stored": max_diff,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "top5"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
