"""How `rag search` embeds its question: in float32 whatever the index's dtype (README,
Retrieval quality), by a running warm server if one of the same model in float32 announces
itself, else by the numpy encoder; never torch in either case."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rag_core.embedders import sentence_transformers as embedding
from rag_core.embedders.numpy_bert import NumpyBertEncoder
from rag_core.embedders.server_client import health
from rag_core.fingerprint import settings_fingerprint
from rag_core.ids import item_key
from rag_core.server_state import ServerState, live_server, read_state, state_path, write_state
from rag_core.settings import TOKEN_ENV, new_token
from rag_core.stores import duckdb_store as store

ROOT = Path(__file__).resolve().parents[1]
TEXTS = [
    "How do I install the tool on Windows?",
    "Retries are configured with the retries key.",
    "short",
    "",
    "Ünïcödé text, ドキュメント and emoji 🚀 in one question",
    "A much longer text about incremental crawling, content hashes and re-embedding " * 40,
]
PAGES = {
    "http://docs.test/install/windows": "Install on Windows with the MSI installer or winget.",
    "http://docs.test/retries": "Retries are configured with the retries key in the config file.",
    "http://docs.test/faq": "Frequently asked questions about licensing and support.",
}
SEARCH = (
    "import json, sys\n"
    "from rag_app.cli import main\n"
    "code = main(['search', sys.argv[1], '-k', '2', '--json'])\n"
    "print('TORCH_LOADED', 'torch' in sys.modules, 'dagster' in sys.modules)\n"
    "sys.exit(code)\n"
)


@pytest.mark.unit
def test_numpy_encoder_gives_the_torch_models_vectors():
    info = embedding.resolve_model(embedding.DEFAULT_MODEL)
    fast = NumpyBertEncoder(Path(info.path), info.max_seq_length).encode(TEXTS)
    model = embedding.load_model(embedding.DEFAULT_MODEL)
    reference = embedding.encode(model, TEXTS, 8)
    assert fast.shape == reference.shape == (len(TEXTS), 384)
    assert fast.dtype == np.float32
    assert np.abs(fast - reference).max() < 1e-5


def build_store(settings) -> None:
    """A tiny store: one chunk per page, embedded by the numpy encoder."""
    info = embedding.resolve_model(embedding.DEFAULT_MODEL)
    vectors = NumpyBertEncoder(Path(info.path), info.max_seq_length).encode(list(PAGES.values()))
    keys = [item_key(url) for url in PAGES]
    with store.connect(settings.duckdb_path) as con:
        store.ensure_schema(con, 384)
        store.insert_rows(
            con, "documents", ["item_id", "url", "title", "text", "content_hash"],
            [(k, u, u.rsplit("/", 1)[-1], t, k) for k, (u, t) in zip(keys, PAGES.items(),
                                                                   strict=True)],
        )  # fmt: skip
        store.insert_rows(
            con, "chunks", ["chunk_id", "item_id", "chunk_index", "text", "token_count",
                            "content_hash"],
            [(f"c{i}", k, 0, t, 10, k) for i, (k, t) in enumerate(zip(keys, PAGES.values(),
                                                                      strict=True))],
        )  # fmt: skip
        store.insert_rows(
            con, "embeddings", ["chunk_id", "item_id", "model", "fingerprint", "embedding"],
            [(f"c{i}", k, embedding.DEFAULT_MODEL, settings_fingerprint(settings), v.tolist())
             for i, (k, v) in enumerate(zip(keys, vectors, strict=True))],
        )  # fmt: skip


def run_search(settings, question: str) -> tuple[list[dict], bool, bool]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBEDDING_", "DATA_DIR"))}
    env.update(DATA_DIR=str(settings.data_dir), DUCKDB_PATH=str(settings.duckdb_path))
    done = subprocess.run(
        [sys.executable, "-c", SEARCH, question],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out, _, flags = done.stdout.rpartition("TORCH_LOADED")
    torch_loaded, dagster_loaded = (word == "True" for word in flags.split())
    return json.loads(out), torch_loaded, dagster_loaded


@pytest.fixture
def data(settings):
    build_store(settings)
    return settings


def test_cold_search_uses_neither_torch_nor_dagster(data):
    hits, torch_loaded, dagster_loaded = run_search(data, "how do I install on windows")
    assert hits[0]["url"] == "http://docs.test/install/windows"
    assert hits[0]["item_id"] == item_key("http://docs.test/install/windows")
    assert not torch_loaded and not dagster_loaded


def test_search_uses_the_warm_server_a_session_announced(data):
    state_file = state_path(data.data_dir)
    token = new_token()
    server = subprocess.Popen(
        # float32: questions are embedded in float32 whatever the index's dtype, so only a
        # float32 server answers them (a default session's server is bfloat16 on BF16 CPUs).
        [sys.executable, "-m", "rag_app.embedding_server", "--dtype", "float32",
         "--state-file", str(state_file)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, TOKEN_ENV: token},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while read_state(state_file) is None:
            assert server.poll() is None, "the embedding server exited"
            assert time.monotonic() < deadline, "the server never announced itself"
            time.sleep(0.2)
        state = read_state(state_file)
        assert state.pid == server.pid and state.dtype == "float32"
        # The session's token travels in the announcement, readable by this user only.
        assert state.token == token
        assert state_file.stat().st_mode & 0o777 == 0o600
        assert health(state.url, "wrong-token") is None
        before = health(state.url, token)["encoded"]

        hits, torch_loaded, _ = run_search(data, "where are retries configured")

        assert hits[0]["url"] == "http://docs.test/retries"
        assert health(state.url, token)["encoded"] == before + 1  # the question went to the server
        assert not torch_loaded
        # Another model or dtype than the settings ask for is never used.
        assert live_server(state_file, embedding.DEFAULT_MODEL, "float32") == state
        assert live_server(state_file, "other/model", "float32") is None
        assert live_server(state_file, embedding.DEFAULT_MODEL, "bfloat16") is None
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    # A server that stops removes its announcement; search still answers, in-process.
    assert not state_file.exists()
    hits, torch_loaded, _ = run_search(data, "where are retries configured")
    assert hits[0]["url"] == "http://docs.test/retries" and not torch_loaded


def test_a_stale_announcement_is_ignored(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "embedding-server.json"
    write_state(path, ServerState("http://127.0.0.1:9", embedding.DEFAULT_MODEL, "float32",
                                  dead.pid))  # fmt: skip
    assert read_state(path).pid == dead.pid
    assert live_server(path, embedding.DEFAULT_MODEL, "float32") is None
    # Alive but not a server (this test's own process): /health does not answer.
    write_state(path, ServerState("http://127.0.0.1:9", embedding.DEFAULT_MODEL, "float32",
                                  os.getpid()))  # fmt: skip
    assert live_server(path, embedding.DEFAULT_MODEL, "float32") is None
    path.write_text("{not json")
    assert read_state(path) is None
