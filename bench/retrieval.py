"""Retrieval quality experiments: build an index of a site with given chunking options and
score both question sets in every search mode (``python -m bench.retrieval``).

The index is built by ``rag_app.evaluation.build_index`` (the assets' extraction, chunking,
ids and store, without Dagster) so that many chunking variants can be compared quickly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from rag_app.evaluation import ChunkingOptions, build_index, evaluate, load_questions
from rag_core.settings import PROJECT_ROOT, load_settings

POSTGRES_HTML = Path("/usr/share/doc/postgresql-doc-15/html")
SITES = {
    # name: (html folder, base URL as crawled, excluded paths, question file)
    "demo": (
        PROJECT_ROOT / "data" / "demo_site",
        "http://127.0.0.1:8765/",
        ("private/*",),  # robots.txt keeps the crawler out of /private/
        PROJECT_ROOT / "eval" / "demo_questions.json",
    ),
    "postgres": (
        POSTGRES_HTML,
        "http://127.0.0.1:8770/",
        (),
        PROJECT_ROOT / "eval" / "postgres_questions.json",
    ),
}
# On 2 shared cores the whole manual (1,173 pages, ~13,500 chunks) takes too long to embed for
# every variant: `--subset 4` keeps every page that answers a question plus every 4th other
# page in sorted file-name order (a fixed subset, ~350 pages), so every question keeps its
# answer and a quarter of the distractors.

VARIANTS = {
    # today's chunks: the defaults before this change
    "baseline": ChunkingOptions(224, 32, False, 56),
    "header": ChunkingOptions(224, 32, True, 56),
    "header-merge128": ChunkingOptions(224, 32, True, 128),
    "header-s128": ChunkingOptions(128, 16, True, 32),
    "header-s254": ChunkingOptions(254, 32, True, 64),
    "header-s254-o0": ChunkingOptions(254, 0, True, 64),
    "header-o0": ChunkingOptions(224, 0, True, 56),
    # size and overlap without the header (the header loses on the PostgreSQL set)
    "s128": ChunkingOptions(128, 16, False, 32),
    "s254": ChunkingOptions(254, 32, False, 64),
    "o0": ChunkingOptions(224, 0, False, 56),
}


def index_counts(db: Path) -> dict:
    from rag_core.stores import duckdb_store as store

    with store.connect(db, read_only=True) as con:
        n, mean = con.execute("SELECT count(*), round(avg(token_count), 1) FROM chunks").fetchone()
        pages = con.execute("SELECT count(*) FROM documents").fetchone()[0]
    return {"pages": pages, "chunks": n, "mean_tokens": mean}


def subset_exclusions(html_dir: Path, questions, every: int) -> tuple[str, ...]:
    """Paths left out of a ``--subset`` index: all but every Nth page that answers nothing."""
    from rag_app.evaluation import matches

    patterns = tuple(p for q in questions for p in q.answers)
    others = [
        p.relative_to(html_dir).as_posix()
        for p in sorted(html_dir.rglob("*.html"))
        if not matches("http://h/" + p.relative_to(html_dir).as_posix(), patterns)
    ]
    return tuple(rel for i, rel in enumerate(others) if i % every)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval")
    parser.add_argument("--site", action="append", choices=sorted(SITES), required=True)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--out", default="/tmp/retrieval", help="folder for the indexes")
    parser.add_argument("--results", default="bench/retrieval_results.jsonl")
    parser.add_argument("--subset", type=int, default=1, help="keep every Nth non-answer page")
    parser.add_argument(
        "--reuse", action="store_true", help="score an index left by an earlier run (no rebuild)"
    )
    args = parser.parse_args(argv)
    from rag_app.search import embedder_for
    from rag_core.embedders import embedder_from_settings

    settings = load_settings()
    # Chunks in the index's dtype (EMBEDDING_DTYPE, auto resolved), questions as `rag search`
    # embeds them (float32): the index then carries the fingerprint search ranks.
    indexer = embedder_from_settings(settings, server_url="")
    embedder = embedder_for(settings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for site in args.site:
        html_dir, base_url, exclude, qfile = SITES[site]
        questions = load_questions(qfile)
        if args.subset > 1:
            exclude = exclude + subset_exclusions(html_dir, questions, args.subset)
        cache: dict = {}
        for name in args.variant:
            options = VARIANTS[name]
            db = out / f"{site}-{name}.duckdb"
            if args.reuse and db.exists():
                built = {"reused": str(db), **index_counts(db)}
            else:
                built = build_index(html_dir, base_url, db, options, indexer, exclude, cache)
            run_settings = dataclasses.replace(options.apply(settings), duckdb_path=db)
            results = evaluate(run_settings, questions, embedder=embedder)
            for r in results:
                row = {
                    "site": site,
                    "subset": args.subset,
                    "variant": name,
                    "options": dataclasses.asdict(options),
                    "dtype": indexer.dtype,
                    **built,
                    **{k: v for k, v in r.as_dict().items() if k != "misses"},
                    "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                print(json.dumps(row), flush=True)
                with open(args.results, "a") as handle:
                    handle.write(json.dumps(row) + "\n")
            with open(out / f"{site}-{name}-misses.json", "w") as handle:
                json.dump([r.as_dict() for r in results], handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
