"""Retrieval quality: recall@1, recall@5 and MRR@10 of questions whose answering pages are
known, for each search mode.

A question file is JSON: ``{"questions": [{"q": "...", "answers": ["*/page.html", ...]}]}``.
An answer pattern is a glob matched against the path of a hit's URL (``/docs/x.html``), or
against the whole URL when it contains ``://``. A question is answered at the rank of the first
hit that matches one of its patterns; hits are pages (best chunk per page), since a user wants
the page that answers, and two chunks of one page should not count as two answers.
"""

from __future__ import annotations

import fnmatch
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rag_app.search import MODES, search
from rag_core.embedders import Embedder
from rag_core.settings import Settings, default

DEPTH = 10  # MRR@10 needs the first ten pages


class QuestionFileError(ValueError):
    """The question file is missing, not JSON, or not in the expected shape."""


@dataclass(frozen=True)
class Question:
    """One question and the URL patterns of the pages that answer it."""

    q: str
    answers: tuple[str, ...]


@dataclass
class ModeResult:
    """Scores of one search mode over a question set."""

    mode: str
    questions: int
    recall_at_1: float
    recall_at_5: float
    mrr_at_10: float
    mean_latency_ms: float
    misses: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "mode": self.mode,
            "questions": self.questions,
            "recall@1": self.recall_at_1,
            "recall@5": self.recall_at_5,
            "mrr@10": self.mrr_at_10,
            "mean_latency_ms": self.mean_latency_ms,
            "misses": self.misses,
        }


def load_questions(path: Path) -> list[Question]:
    """Read and check a question file; the error names the file and the bad entry."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise QuestionFileError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QuestionFileError(f"{path}: not a JSON file: {exc}") from exc
    items = data.get("questions") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise QuestionFileError(f'{path}: expected {{"questions": [...]}} with at least one entry')
    out = []
    for i, item in enumerate(items):
        q = item.get("q") if isinstance(item, dict) else None
        answers = item.get("answers") if isinstance(item, dict) else None
        if not isinstance(q, str) or not q.strip():
            raise QuestionFileError(f"{path}: question {i} has no text in 'q'")
        if (
            not isinstance(answers, list)
            or not answers
            or not all(isinstance(a, str) and a for a in answers)
        ):
            raise QuestionFileError(f"{path}: question {i} needs 'answers': a list of URL globs")
        out.append(Question(q.strip(), tuple(answers)))
    return out


def matches(url: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``url`` is one of the answering pages."""
    path = urlsplit(url).path or "/"
    return any(fnmatch.fnmatchcase(url if "://" in p else path, p) for p in patterns)


def first_answer_rank(urls: list[str], patterns: tuple[str, ...]) -> int | None:
    """1-based rank of the first answering URL, or None."""
    for rank, url in enumerate(urls, start=1):
        if matches(url, patterns):
            return rank
    return None


def score(ranks: list[int | None]) -> tuple[float, float, float]:
    """(recall@1, recall@5, MRR@10) of the first-answer ranks of a question set."""
    n = len(ranks)
    r1 = sum(1 for r in ranks if r is not None and r <= 1) / n
    r5 = sum(1 for r in ranks if r is not None and r <= 5) / n
    mrr = sum(1.0 / r for r in ranks if r is not None and r <= DEPTH) / n
    return round(r1, 3), round(r5, 3), round(mrr, 3)


def evaluate(
    settings: Settings, questions: list[Question], modes: tuple[str, ...] = MODES,
    embedder: Embedder | None = None,
) -> list[ModeResult]:
    """Run every question through every mode against the store in ``settings``."""
    if any(m not in MODES for m in modes):
        raise ValueError(f"unknown mode in {modes}: use {', '.join(MODES)}")
    if embedder is None and any(m != "keyword" for m in modes):
        from rag_app.search import embedder_for

        embedder = embedder_for(settings)
    results = []
    for mode in modes:
        ranks: list[int | None] = []
        misses = []
        started = time.monotonic()
        for question in questions:
            hits = search(settings, question.q, DEPTH, embedder, mode=mode, by_page=True)
            urls = [h.url for h in hits]
            rank = first_answer_rank(urls, question.answers)
            ranks.append(rank)
            if rank != 1:
                misses.append({"q": question.q, "rank": rank, "top": urls[:3]})
        elapsed = time.monotonic() - started
        r1, r5, mrr = score(ranks)
        results.append(
            ModeResult(
                mode, len(questions), r1, r5, mrr, round(1000 * elapsed / len(questions), 1), misses
            )
        )
    return results


def format_table(results: list[ModeResult]) -> str:
    """A plain-text table: one line per mode."""
    lines = [
        f"{'mode':<8} {'questions':>9} {'recall@1':>9} {'recall@5':>9} {'MRR@10':>7} {'ms/q':>7}"
    ]
    for r in results:
        lines.append(
            f"{r.mode:<8} {r.questions:>9} {r.recall_at_1:>9.3f} {r.recall_at_5:>9.3f} "
            f"{r.mrr_at_10:>7.3f} {r.mean_latency_ms:>7.1f}"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class ChunkingOptions:
    """The chunking settings an evaluation index is built with (the CHUNK_* settings)."""

    size_tokens: int
    overlap_tokens: int
    context_header: bool
    min_tokens: int | None

    @classmethod
    def from_settings(cls, settings: Settings) -> ChunkingOptions:
        return cls(
            settings.chunk_size_tokens,
            settings.chunk_overlap_tokens,
            settings.chunk_context_header,
            settings.chunk_min_tokens,
        )

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with these chunking options: what search needs to rank an index built
        with them (the index fingerprint covers chunking)."""
        import dataclasses

        return dataclasses.replace(
            settings,
            chunk_size_tokens=self.size_tokens,
            chunk_overlap_tokens=self.overlap_tokens,
            chunk_context_header=self.context_header,
            chunk_min_tokens=(
                settings.chunk_min_tokens if self.min_tokens is None else self.min_tokens
            ),
        )


def build_index(
    html_dir: Path,
    base_url: str,
    db_path: Path,
    options: ChunkingOptions,
    embedder: Embedder,
    exclude: tuple[str, ...] = (),
    vector_cache: dict | None = None,
) -> dict:
    """Index a folder of HTML pages as if crawled from ``base_url``, without Dagster: the
    same extraction, chunking, ids and store as the assets, for quick chunking experiments and
    the CI smoke evaluation. ``embedder`` is the index's (``embedder_from_settings``), not the
    questions' (``rag_app.search.embedder_for``: float32 whatever the index's dtype), so that
    the index carries the fingerprint search ranks. ``vector_cache`` (text -> vector) spares
    re-embedding a text seen in an earlier build. Returns counts and timings."""
    import numpy as np

    from rag_core import ids, stores
    from rag_core.chunking import chunk_document, max_chunk_tokens
    from rag_core.extraction import extract_document
    from rag_core.fingerprint import index_fingerprint

    started = time.monotonic()
    fingerprint = index_fingerprint(
        embedder,
        options.size_tokens,
        options.overlap_tokens,
        options.context_header,
        default("CHUNK_MIN_TOKENS") if options.min_tokens is None else options.min_tokens,
    )
    tokenizer = embedder.tokenizer
    limit = max_chunk_tokens(tokenizer, options.size_tokens)
    docs, chunks = [], []
    for path in sorted(Path(html_dir).rglob("*.html")):
        rel = path.relative_to(html_dir).as_posix()
        if any(fnmatch.fnmatchcase(rel, pattern) for pattern in exclude):
            continue
        url = base_url.rstrip("/") + "/" + rel
        item_id = ids.item_key(url)
        doc = extract_document(path.read_text(encoding="utf-8", errors="replace"), url)
        if not doc.text.strip():
            continue
        docs.append((item_id, url, doc.title, doc.text, ids.content_hash(doc.text)))
        for piece in chunk_document(
            doc.text,
            tokenizer,
            limit,
            options.overlap_tokens,
            doc.title,
            context_header=options.context_header,
            min_tokens=options.min_tokens,
        ):
            chunks.append(
                (
                    ids.chunk_id(item_id, piece.index, piece.text),
                    item_id,
                    piece.index,
                    piece.heading,
                    piece.text,
                    piece.token_count,
                    ids.content_hash(piece.text),
                )
            )
    chunked_s = time.monotonic() - started
    cache = vector_cache if vector_cache is not None else {}
    todo = sorted({c[4] for c in chunks if c[4] not in cache})
    if todo:
        vectors, _ = embedder.embed(todo)
        cache.update(zip(todo, vectors, strict=True))
    embedded_s = time.monotonic() - started - chunked_s
    dim = embedder.dimension
    db_path = Path(db_path)
    for leftover in (db_path, db_path.with_name(db_path.name + ".wal")):
        leftover.unlink(missing_ok=True)
    # Rows in the column order of rag_core.stores (documents: its first five columns).
    vector_rows = [
        (
            c[0],
            c[1],
            embedder.name,
            fingerprint,
            np.asarray(cache[c[4]], dtype=np.float32).tolist(),
        )
        for c in chunks
    ]
    fts_s = stores.store_at(db_path).load_index(docs, chunks, vector_rows, dim)
    tokens = [c[5] for c in chunks]
    return {
        "pages": len(docs),
        "chunks": len(chunks),
        "mean_tokens": round(sum(tokens) / max(len(tokens), 1), 1),
        "embedded": len(todo),
        "chunk_s": round(chunked_s, 1),
        "embed_s": round(embedded_s, 1),
        "fts_build_s": round(fts_s, 2),
    }
