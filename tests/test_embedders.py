"""The embedder interface (rag_core.embedders): the contract every implementation keeps, the
fake provider, the provider setting and resource field, the fingerprint and the digest cache.

``assert_embedder_contract`` runs here on the fake, alone and behind a real warm server;
tests/test_embedding.py runs it on the sentence-transformers model and its server client.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest

from rag_app import embedding_server
from rag_core import fingerprint
from rag_core.chunking import chunk_document, max_chunk_tokens
from rag_core.constants import ITEMS_PARTITIONS
from rag_core.embedders import (
    PROVIDERS,
    Embedder,
    EmbedderError,
    FakeEmbedder,
    ServerClientEmbedder,
    create_embedder,
    embedder_from_settings,
)
from rag_core.embedders.server_client import EmbeddingServerError, remote_encode
from rag_core.fingerprint import index_fingerprint, settings_fingerprint, weights_digest
from rag_core.settings import TOKEN_ENV, SettingsError
from resources.embedder import EmbedderResource
from tests.helpers import paragraphs, settings_for, write_page

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-embedders-token"
TEXTS = [
    "How do I install the tool on Windows?",
    "Retries are configured with the retries key.",
    "short",
    "",
    "Ünïcödé text, ドキュメント and emoji 🚀 in one question",
    "A much longer text about incremental crawling, content hashes and re-embedding " * 40,
]


def assert_embedder_contract(embedder: Embedder) -> None:
    """What ingestion, checks, search and the chunker rely on, for any implementation."""
    assert embedder.provider in PROVIDERS
    assert isinstance(embedder.name, str) and embedder.name
    dim = embedder.dimension
    assert isinstance(dim, int) and dim > 0
    vectors = embedder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(vectors).all()
    # One row per text in order: a text's vector does not depend on its batch.
    alone = embedder.encode([TEXTS[1]], batch_size=1)
    assert np.abs(alone[0] - vectors[1]).max() < 1e-5
    assert np.abs(embedder.encode(TEXTS[::-1])[::-1] - vectors).max() < 1e-5
    assert embedder.encode([]).shape == (0, dim)
    embedded, where = embedder.embed(TEXTS[:2])
    assert isinstance(where, str) and where
    assert np.abs(embedded - vectors[:2]).max() < 1e-5
    # The tokenizer the chunker counts in.
    tok = embedder.tokenizer
    assert 0 <= tok.special_tokens < tok.max_seq_length
    for text in TEXTS:
        spans = tok.offsets(text)
        assert tok.count(text) == len(spans)
        assert all(0 <= start < end <= len(text) for start, end in spans)
    assert tok.count("") == 0 and tok.count("one two three") >= 3
    limit = max_chunk_tokens(tok, 10_000)
    assert limit == tok.max_seq_length - tok.special_tokens
    for piece in chunk_document(TEXTS[-1] * 3, tok, min(limit, 64), 8):
        assert tok.count(piece.text) <= min(limit, 64)
    # The fingerprint's part: stable strings; every provider but the original names itself.
    identity = embedder.identity()
    assert identity == embedder.identity() and identity["model"]
    assert all(isinstance(v, str) for v in identity.values())
    if embedder.provider != "sentence-transformers":
        assert identity["provider"] == embedder.provider
    assert embedder.describe() == {
        "provider": embedder.provider,
        "model": embedder.name,
        "dtype": embedder.dtype,
    }


@pytest.fixture(scope="module")
def fake_server():
    """A real warm embedding server serving the fake (no model to load: starts at once)."""
    server = embedding_server.serve("127.0.0.1", 0, "", "float32", 0, TOKEN, provider="fake")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_fake_keeps_the_contract():
    assert_embedder_contract(FakeEmbedder())


def test_the_server_client_keeps_the_contract(fake_server):
    server, url = fake_server
    client = create_embedder("fake", server_url=url, token=TOKEN)
    assert isinstance(client, ServerClientEmbedder)
    before = server.encoded
    assert_embedder_contract(client)
    assert server.encoded > before  # the vectors came from the server
    assert client.embed(["x"])[1] == f"server {url}"
    # Identical to the local twin's vectors: the server encodes with the same embedder.
    assert np.array_equal(client.encode(TEXTS), FakeEmbedder().encode(TEXTS))


def test_the_client_falls_back_to_its_local_twin_when_the_server_refuses(fake_server):
    _, url = fake_server
    # A server never answers for another model than its own (409) ...
    real = create_embedder("sentence-transformers")
    with pytest.raises(EmbeddingServerError, match="model mismatch"):
        remote_encode(url, TEXTS, real.name, real.dtype, 8, TOKEN)
    # ... nor without the session's token (401): the client answers in-process instead.
    wrong = create_embedder("fake", server_url=url, token="wrong", for_queries=True)
    vectors, where = wrong.embed(TEXTS)
    assert where == "in-process" and np.array_equal(vectors, FakeEmbedder().encode(TEXTS))
    assert wrong.url == ""  # a search does not ask a failed server again


def test_fake_vectors_are_deterministic_and_share_words():
    fake = FakeEmbedder()
    # Same vectors in a fresh process: nothing depends on hash() randomisation or state.
    code = (
        "import sys; from rag_core.embedders import create_embedder;"
        "v = create_embedder('fake').encode(['install on windows']);"
        "print(repr(v[0, :4].tolist())); print('torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    first, torch_loaded = done.stdout.split("\n")[:2]
    assert first == repr(fake.encode(["install on windows"])[0, :4].tolist())
    assert torch_loaded == "False"  # the fake never imports torch
    question, install, other = fake.encode(
        ["install on windows", "How to install the tool on Windows", "retries key in config"]
    )
    assert question @ install > question @ other


def test_fake_is_fast():
    import time

    texts = [paragraphs(f"topic {i}", 1) for i in range(500)]
    started = time.monotonic()
    FakeEmbedder().encode(texts)
    assert time.monotonic() - started < 2.0


def test_provider_setting_accepts_fake_and_names_the_choices(tmp_path):
    settings = settings_for(tmp_path, EMBEDDING_PROVIDER="fake")
    assert settings.embedding_provider == "fake"
    assert isinstance(embedder_from_settings(settings), FakeEmbedder)
    with pytest.raises(SettingsError, match="EMBEDDING_PROVIDER.*sentence-transformers or fake"):
        settings_for(tmp_path, EMBEDDING_PROVIDER="onnx")


def test_the_resource_reads_its_provider_field(monkeypatch):
    assert isinstance(EmbedderResource(provider="fake").get_embedder(), FakeEmbedder)
    local = EmbedderResource().get_embedder()
    assert local.provider == "sentence-transformers" and local.name.endswith("all-MiniLM-L6-v2")
    with pytest.raises(EmbedderError, match="EMBEDDING_PROVIDER='onnx'"):
        EmbedderResource(provider="onnx").get_embedder()
    # With a server URL the resource hands out the server's client, the token read when used.
    monkeypatch.setenv(TOKEN_ENV, "from-the-run-environment")
    client = EmbedderResource(provider="fake", server_url="http://127.0.0.1:9").get_embedder()
    assert isinstance(client, ServerClientEmbedder) and client.provider == "fake"
    assert client.token == "from-the-run-environment"


def test_the_fingerprint_separates_providers(tmp_path):
    real = settings_for(tmp_path, EMBEDDING_PROVIDER="sentence-transformers")
    fake = settings_for(tmp_path, EMBEDDING_PROVIDER="fake")
    assert settings_fingerprint(fake) != settings_fingerprint(real)
    assert settings_fingerprint(fake) == index_fingerprint(FakeEmbedder(), 224, 32, False, 56)


def test_weights_digest_is_cached_on_disk_by_path_size_and_mtime(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights" * 1000)
    (model / "config.json").write_text("{}")
    cache = tmp_path / "digests.json"
    digest = weights_digest(str(model), cache)
    assert cache.is_file() and digest in cache.read_text()
    # A new process (empty memory) reads the digest back instead of hashing the weights.
    monkeypatch.setattr(fingerprint, "_DIGESTS", {})
    monkeypatch.setattr(fingerprint, "_hash_weights", lambda folder: pytest.fail("hashed"))
    assert weights_digest(str(model), cache) == digest
    # Changed weights (another size and mtime) are hashed again.
    monkeypatch.undo()
    monkeypatch.setattr(fingerprint, "_DIGESTS", {})
    (model / "model.safetensors").write_bytes(b"other weights" * 1000)
    assert weights_digest(str(model), cache) != digest
    # An unreadable cache only costs the shortcut.
    cache.write_text("not json")
    monkeypatch.setattr(fingerprint, "_DIGESTS", {})
    assert weights_digest(str(model), cache) == weights_digest(str(model))


def test_ingestion_and_search_with_the_fake_provider(tmp_path):
    """The whole ingestion with EMBEDDING_PROVIDER=fake: the chunker counts in the fake's
    tokenizer, vectors carry its name, width and fingerprint, the checks pass, search ranks."""
    from rag_app.search import search
    from rag_assets.checks import embedding_dimension_matches_model, one_index_fingerprint
    from rag_assets.definitions import build_definitions
    from rag_assets.ingest import ingest_batch
    from resources.duckdb_store import DuckDBStore

    settings = settings_for(tmp_path / "data", EMBEDDING_PROVIDER="fake", EMBEDDING_SERVER="false")
    keys = [
        write_page(settings.raw_dir, "http://docs.test/install", "Install",
                   paragraphs("installing on windows with the msi installer", 12)),
        write_page(settings.raw_dir, "http://docs.test/retries", "Retries",
                   paragraphs("retries are configured with the retries key", 3)),
    ]  # fmt: skip
    resources = build_definitions(settings).resources
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(ITEMS_PARTITIONS, keys)
        order = instance.get_dynamic_partitions(ITEMS_PARTITIONS)
        first, last = sorted(keys, key=order.index)[:: len(keys) - 1]
        result = dg.materialize(
            [ingest_batch],
            instance=instance,
            resources=resources,
            tags={
                "dagster/asset_partition_range_start": first,
                "dagster/asset_partition_range_end": last,
            },
        )
    assert result.success
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        stored = con.execute(
            "SELECT DISTINCT model, fingerprint, len(embedding) FROM embeddings"
        ).fetchall()
        texts = con.execute("SELECT text, token_count FROM chunks").fetchall()
    assert stored == [("fake-hash-64", settings_fingerprint(settings), 64)]
    tokenizer = FakeEmbedder().tokenizer
    assert len(texts) > 2
    assert all(tokenizer.count(text) == count <= 224 for text, count in texts)
    db = DuckDBStore(path=str(settings.duckdb_path))
    assert embedding_dimension_matches_model(duckdb=db, embedder=resources["embedder"]).passed
    assert one_index_fingerprint(duckdb=db).passed
    hits = search(settings, "where are retries configured", 1, mode="vector")
    assert hits[0].url == "http://docs.test/retries"
