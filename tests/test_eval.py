"""`rag eval`: question files, scoring, and a smoke evaluation of the demo site's question set
against an index built with the default settings and the real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rag_app.evaluation import (
    ChunkingOptions,
    QuestionFileError,
    build_index,
    first_answer_rank,
    load_questions,
    matches,
    score,
)
from rag_core.embedders import embedder_from_settings
from rag_core.settings import PROJECT_ROOT
from tests.helpers import settings_for

DEMO_QUESTIONS = PROJECT_ROOT / "eval" / "demo_questions.json"
RAG = [sys.executable, "-m", "rag_app.cli"]


def test_matching_and_scores():
    assert matches("http://h:1/docs/install/linux.html", ("/docs/install/linux.html",))
    assert matches("http://h:1/docs/x/gin-intro.html", ("*/gin*.html",))
    assert not matches("http://h:1/docs/x/begin.html", ("*/gin*.html",))
    assert matches("http://h:1/a.html", ("http://h:1/*",))
    assert first_answer_rank(["http://h/a", "http://h/b"], ("/b",)) == 2
    # ranks 1, 2, miss, 6 of four questions
    assert score([1, 2, None, 6]) == (0.25, 0.5, round((1 + 0.5 + 1 / 6) / 4, 3))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a JSON file"),
        ('{"questions": []}', "at least one entry"),
        ('{"questions": [{"q": "x"}]}', "question 0 needs 'answers'"),
        ('{"questions": [{"q": " ", "answers": ["/a"]}]}', "question 0 has no text"),
    ],
)
def test_bad_question_files_are_named_errors(tmp_path, content, message):
    path = tmp_path / "q.json"
    path.write_text(content)
    with pytest.raises(QuestionFileError, match=message):
        load_questions(path)


def test_every_shipped_question_set_is_valid_and_large_enough():
    for name in ("demo_questions.json", "postgres_questions.json"):
        assert len(load_questions(PROJECT_ROOT / "eval" / name)) >= 40


@pytest.mark.e2e
def test_rag_eval_smoke_on_the_demo_site(tmp_path):
    """The demo site indexed with the default chunking settings, then `rag eval` as a user
    runs it: every mode is scored, and the default mode clears a floor well below what it
    measures (bench/RETRIEVAL.md) so that a regression in chunking or ranking fails here."""
    settings = settings_for(tmp_path)
    built = build_index(
        PROJECT_ROOT / "data" / "demo_site",
        "http://127.0.0.1:8765/",
        settings.duckdb_path,
        ChunkingOptions.from_settings(settings),
        embedder_from_settings(settings, server_url=""),
        exclude=("private/*",),
    )
    assert built["pages"] >= 50 and built["chunks"] > 100
    env = dict(os.environ, DATA_DIR=str(tmp_path), DUCKDB_PATH=str(settings.duckdb_path))
    env.pop("EMBEDDING_SERVER_URL", None)
    out = subprocess.run(
        [*RAG, "eval", str(DEMO_QUESTIONS), "--json"],
        env=env, capture_output=True, text=True, timeout=600, check=True, cwd=PROJECT_ROOT,
    )  # fmt: skip
    results = {r["mode"]: r for r in json.loads(out.stdout)}
    assert set(results) == {"hybrid", "vector", "keyword"}
    assert all(r["questions"] == len(load_questions(DEMO_QUESTIONS)) for r in results.values())
    assert results["hybrid"]["recall@5"] >= 0.9
    assert results["hybrid"]["mrr@10"] >= 0.8
    missing = subprocess.run(
        [*RAG, "eval", str(tmp_path / "none.json")], env=env, capture_output=True, text=True
    )
    assert missing.returncode == 1 and "no such file" in missing.stderr
