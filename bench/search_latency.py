"""Search latency at scale: p50/p95 of `vector` and `hybrid` search over N synthetic chunks
(``python -m bench.search_latency --n 100000 --n 1000000``).

Chunks are random text over a 5,000-word vocabulary with random 384-d vectors, 10 chunks per
page. The question vector is random too, so the timing is the store's (DuckDB scan, BM25,
fusion, de-duplication); embedding one question with the warm model adds ~10-20 ms on top.
The keyword index is built once per size (its build time is reported: that is the cost of a
rebuild after a batch changed the chunks).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from rag_app.search import search
from rag_core.fingerprint import settings_fingerprint
from rag_core.settings import load_settings
from rag_core.stores import duckdb_store as store

DIM = 384
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
WORDS = 5000
QUESTIONS = 40


def word(i: int) -> str:
    """Vocabulary word ``i`` in letters only: the keyword index drops digits (its default
    ignore pattern), so "w17" and "w18" would both index as "w" and BM25 would rank nothing."""
    return "w" + str(i).translate(str.maketrans("0123456789", "abcdefghij"))


def word_sql(expr: str) -> str:
    """``word`` in SQL, for the integer expression ``expr``."""
    return f"'w' || translate(({expr})::VARCHAR, '0123456789', 'abcdefghij')"


class RandomEmbedder:
    """Stands in for the model: a random unit vector per text."""

    @dataclasses.dataclass
    class Info:
        name: str = MODEL
        dimension: int = DIM

    info = Info()

    def __init__(self, seed: int = 1):
        self.rng = np.random.default_rng(seed)

    def embed(self, texts):
        v = self.rng.standard_normal((len(texts), DIM)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True), "random"


def build(path: Path, n: int) -> dict:
    """A store of ``n`` synthetic chunks, generated inside DuckDB."""
    for leftover in (path, path.with_name(path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    started = time.monotonic()
    with store.connect(path) as con:
        store.ensure_schema(con, DIM)
        con.execute("SELECT setseed(0.42)")
        con.execute(
            f"CREATE TEMP TABLE vocab AS SELECT i, {word_sql('i')} AS w FROM range({WORDS}) t(i)"
        )
        pages = max(n // 10, 1)
        con.execute(
            "INSERT INTO documents (item_id, url, title, text, content_hash) "
            "SELECT 'p' || i, 'http://127.0.0.1/p/' || i || '.html', 'Page ' || i, '', "
            f"md5('p' || i) FROM range({pages}) t(i)"
        )
        # Words drawn with a skewed distribution so BM25 sees common and rare terms.
        con.execute(
            "INSERT INTO chunks (chunk_id, item_id, chunk_index, heading, text, token_count, "
            "content_hash) "
            "SELECT 'c' || i, 'p' || (i // 10), i % 10, 'Section ' || (i % 10), "
            "  list_aggregate(list_transform(range(60), x -> "
            f"   {word_sql(f'floor(pow(random(), 3) * {WORDS})::INT')}), 'string_agg', ' '), 60, "
            "  md5('c' || i) "
            f"FROM range({n}) t(i)"
        )
        fingerprint = settings_fingerprint(load_settings())  # what search ranks
        con.execute(
            "INSERT INTO embeddings (chunk_id, item_id, model, fingerprint, embedding) "
            f"SELECT 'c' || i, 'p' || (i // 10), '{MODEL}', '{fingerprint}', "
            f"  list_transform(range({DIM}), x -> random() - 0.5)::FLOAT[{DIM}] "
            f"FROM range({n}) t(i)"
        )
        gen_s = time.monotonic() - started
        fts_s = store.rebuild_fts_index(con)
    return {"generate_s": round(gen_s, 1), "fts_build_s": round(fts_s, 1)}


def measure(path: Path, mode: str, k: int = 10) -> dict:
    settings = dataclasses.replace(load_settings(), duckdb_path=path)
    embedder = RandomEmbedder()
    rng = np.random.default_rng(7)
    times = []
    for i in range(QUESTIONS + 3):
        words = " ".join(word(int(x)) for x in rng.integers(0, WORDS // 10, 4))
        started = time.monotonic()
        hits = search(settings, words, k, embedder, mode=mode, by_page=True)
        if i >= 3:  # the first queries warm the file cache
            times.append(1000 * (time.monotonic() - started))
        assert hits, "no hits"
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search_latency")
    parser.add_argument("--n", type=int, action="append", required=True)
    parser.add_argument("--dir", default="/tmp/rag-search-latency")
    parser.add_argument("--write", type=Path, help="put the table into this markdown file")
    args = parser.parse_args(argv)
    rows = []
    for n in args.n:
        path = Path(args.dir) / f"chunks-{n}.duckdb"
        path.parent.mkdir(parents=True, exist_ok=True)
        built = build(path, n)
        for mode in ("vector", "hybrid"):
            row = {"chunks": n, "mode": mode, **built, **measure(path, mode)}
            print(row, flush=True)
            rows.append(row)
        path.unlink(missing_ok=True)
    if args.write:
        write_section(args.write, rows)
    return 0 if rows else 1


BEGIN, END = "<!-- search-latency -->", "<!-- /search-latency -->"


def write_section(path: Path, rows: list[dict]) -> None:
    """Replace (or append) the search latency section of a markdown file."""
    import os

    lines = [
        BEGIN,
        "## Search latency (`python -m bench.search_latency`)",
        "",
        f"{QUESTIONS} queries per row after 3 warm-up queries, k=10, results by page; "
        f"synthetic chunks (random text, random {DIM}-d vectors), query vector random, so the "
        f"figure is the store's work; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end (other processes share the CPUs), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Targets: p95 <= 150 ms at "
        "100k chunks, <= 1 s at 1M.",
        "",
        "| chunks | mode | p50 ms | p95 ms | target p95 ms | generate s | keyword index build s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        target = 150 if r["chunks"] <= 100_000 else 1000
        verdict = "PASS" if r["p95_ms"] <= target else "FAIL"
        lines.append(
            f"| {r['chunks']:,} | {r['mode']} | {r['p50_ms']} | {r['p95_ms']} | "
            f"{target} ({verdict}) | {r['generate_s']} | {r['fts_build_s']} |"
        )
    lines.append(END)
    section = "\n".join(lines)
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
