"""The embedding model: offline resolution, dtype checks, the warm server equal to in-process."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rag_app import embedding_server
from rag_core.embedders import sentence_transformers as embedding
from rag_core.embedders import server_client
from rag_core.settings import TOKEN_ENV
from resources.embedder import EmbedderResource


def resource_embedder(**config):
    """The resource's embedder for ``config`` (the sentence-transformers provider), in float32
    unless ``dtype`` says otherwise: most tests here compare with the library's own float32
    vectors (the default, auto, is bfloat16 on CPUs with native BF16)."""
    return EmbedderResource(**{"dtype": "float32", **config}).get_embedder()


TOKEN = "test-session-token"

TEXTS = [
    "How do I install the tool on Windows?",
    "Retries are configured with the retries key.",
    "short",
    "A much longer sentence about incremental crawling, content hashes and re-embedding " * 5,
]


@pytest.fixture(scope="module")
def local_vectors():
    vectors, where = resource_embedder().embed(TEXTS)
    assert where == "in-process"
    return vectors


@pytest.fixture(scope="module")
def server():
    srv = embedding_server.serve("127.0.0.1", 0, embedding.DEFAULT_MODEL, "float32", 0, TOKEN)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_bundled_model_resolves_offline_without_torch():
    info = embedding.resolve_model("all-MiniLM-L6-v2")
    assert info.name == embedding.DEFAULT_MODEL
    assert (info.max_seq_length, info.dimension) == (256, 384)


def test_unloadable_model_names_the_variable():
    with pytest.raises(embedding.EmbeddingModelError, match="EMBEDDING_MODEL='no-such/model'"):
        embedding.resolve_model("no-such/model")


def test_bfloat16_refused_without_native_support(monkeypatch):
    monkeypatch.setattr(embedding, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(embedding.EmbeddingModelError, match="EMBEDDING_DTYPE='bfloat16'"):
        embedding.check_dtype("bfloat16")
    embedding.check_dtype("float32")


def test_local_vectors_are_normalised_and_meaningful(local_vectors):
    assert local_vectors.shape == (4, 384) and local_vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(local_vectors, axis=1), 1.0, atol=1e-5)
    query, _ = resource_embedder().embed(["install on windows"])
    scores = local_vectors @ query[0]
    assert int(np.argmax(scores)) == 0


def test_a_process_loads_the_model_once_for_many_embedders(local_vectors, caplog):
    # A warm worker: every step builds its embedder anew, the model loads once per process.
    before = embedding.model_loads()
    assert before >= 1  # local_vectors loaded it
    for text in ("first step", "second step", "third step"):
        resource_embedder().embed([text])
    assert embedding.model_loads() == before
    assert embedding.MODEL_LOADED not in caplog.text


@pytest.mark.e2e
def test_server_gives_the_same_vectors_as_in_process(server, local_vectors, monkeypatch):
    assert server_client.health(server, TOKEN)["dimension"] == 384
    monkeypatch.setenv(TOKEN_ENV, TOKEN)  # runs get the session's token this way
    embedder = resource_embedder(server_url=server)
    vectors, where = embedder.embed(TEXTS)
    assert where.startswith("server")
    assert np.abs(vectors - local_vectors).max() < 1e-5


@pytest.mark.e2e
def test_model_mismatch_is_refused_and_the_resource_falls_back(server, local_vectors):
    with pytest.raises(server_client.EmbeddingServerError, match="model mismatch"):
        server_client.remote_encode(server, TEXTS, "other/model", "float32", 8, TOKEN)
    # Nothing listens on this port: the resource embeds in-process instead of failing.
    vectors, where = resource_embedder(server_url="http://127.0.0.1:9").embed(TEXTS)
    assert where == "in-process"
    assert np.abs(vectors - local_vectors).max() < 1e-5


@pytest.mark.skipif(not embedding.cpu_has_native_bf16(), reason="CPU has no native bfloat16")
def test_bfloat16_vectors_stay_close_to_float32(local_vectors):
    vectors, _ = resource_embedder(dtype="bfloat16").embed(TEXTS)
    cosines = (vectors * local_vectors).sum(axis=1)
    # Measured >= 0.9999 on the demo site's 285 chunks (pooled and normalised in float32).
    assert cosines.min() > 0.999


@pytest.mark.skipif(not embedding.cpu_has_native_bf16(), reason="CPU has no native bfloat16")
def test_bfloat16_vectors_do_not_depend_on_the_batch():
    """Streaming and batch mode, and two workers, group chunks differently: in bfloat16 the
    padded length of a batch used to change a vector by up to 2e-3 (cosine 0.996). Each text
    is now padded to a length of its own: the same bits in any grouping, at unit length."""
    embedder = resource_embedder(dtype="auto")
    assert embedder.dtype == "bfloat16"
    together = embedder.encode(TEXTS)
    alone = np.stack([embedder.encode([text], batch_size=1)[0] for text in TEXTS])
    mixed = embedder.encode([TEXTS[3], *TEXTS[:3]], batch_size=2)  # other batches, padding
    assert np.array_equal(together, alone)
    assert np.array_equal(mixed[[1, 2, 3, 0]], together)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-6)
    from tests.test_embedders import assert_embedder_contract

    assert_embedder_contract(embedder)  # unit length and batch-independent within 1e-5


def test_batch_sizes_cover_every_text_with_few_distinct_sizes():
    for batch_size in (1, 7, 64, 100):
        seen = set()
        for count in range(0, 300):
            sizes = embedding.batch_sizes(count, batch_size)
            assert sum(sizes) == count and all(0 < size <= batch_size for size in sizes)
            seen.update(sizes)
        # The full batch and the powers of two below it, whatever the counts.
        assert len(seen) <= batch_size.bit_length() + 1
    assert embedding.batch_sizes(100, 64) == [64, 32, 4]


@pytest.mark.skipif(not embedding.cpu_has_native_bf16(), reason="CPU has no native bfloat16")
def test_bfloat16_meets_few_tensor_shapes_however_the_texts_come():
    """oneDNN keeps a compiled kernel per tensor shape for the life of the process (~3 MB
    each here): batches of every size from 1 to 64 made the warm server's RSS grow with the
    pages embedded (bench P5b). Requests of 1 to 40 texts of one padded length now meet 6
    batch sizes, not 40, and the vectors are those of one text at a time."""
    embedder = resource_embedder(dtype="bfloat16")
    model = embedding._loaded(embedder.model, embedder.dtype, embedder.threads)
    shapes = set()
    # On the library's Transformer module: it calls the BERT model's forward directly.
    hook = model[0].register_forward_pre_hook(
        lambda _module, args: shapes.add(tuple(args[0]["input_ids"].shape))
    )
    texts = [f"page {i} of the guide, about retries" for i in range(40)]
    try:
        together = [embedder.encode(texts[:count], batch_size=64) for count in range(1, 41)]
    finally:
        hook.remove()
    assert {length for _, length in shapes} == {32}
    assert len(shapes) <= 7, sorted(shapes)
    alone = np.stack([embedder.encode([text], batch_size=1)[0] for text in texts])
    for count, vectors in enumerate(together, start=1):
        assert np.array_equal(vectors, alone[:count])


def test_the_model_and_its_server_client_keep_the_embedder_contract(server, monkeypatch):
    from rag_core.embedders import create_embedder
    from tests.test_embedders import assert_embedder_contract

    assert_embedder_contract(resource_embedder())
    assert_embedder_contract(create_embedder(for_queries=True))  # the numpy path of searches
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    client = resource_embedder(server_url=server)
    assert_embedder_contract(client)
    assert client.embed(TEXTS)[1] == f"server {server}"


def test_vectors_are_the_libraries_own_bit_for_bit(local_vectors):
    """The interface changes no bit: sentence-transformers' own encode, called directly."""
    from sentence_transformers import SentenceTransformer

    info = embedding.resolve_model(embedding.DEFAULT_MODEL)
    direct = SentenceTransformer(info.path, device="cpu").encode(
        TEXTS, batch_size=64, normalize_embeddings=True, convert_to_numpy=True
    )
    assert np.array_equal(direct.astype(np.float32), local_vectors)


def test_the_float32_index_fingerprint_is_unchanged(tmp_path, monkeypatch):
    """Stored float32 indexes stay valid: the fingerprint of float32 settings is the one made
    before embedders had providers (a change here re-embeds every deployment's pages), and
    so is the default's (auto) on a CPU without native BF16. On a CPU with it, the default
    is bfloat16: another fingerprint, so the switch re-embeds (tests/test_fingerprint.py)."""
    from rag_core.fingerprint import settings_fingerprint
    from tests.helpers import settings_for

    assert settings_fingerprint(settings_for(tmp_path, EMBEDDING_DTYPE="float32")) == (
        "73245b20f511f702"
    )
    monkeypatch.setattr(embedding, "cpu_has_native_bf16", lambda: False)
    assert settings_fingerprint(settings_for(tmp_path)) == "73245b20f511f702"


@pytest.mark.e2e
@pytest.mark.skipif(not embedding.cpu_has_native_bf16(), reason="CPU has no native bfloat16")
def test_a_default_server_serves_default_runs_in_bfloat16(monkeypatch):
    """The server started as `rag run` starts it (--dtype auto) announces the resolved dtype
    and answers a run's default embedder with the vectors that run would compute itself."""
    srv = embedding_server.serve("127.0.0.1", 0, embedding.DEFAULT_MODEL, "auto", 0, TOKEN)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        assert server_client.health(url, TOKEN)["dtype"] == "bfloat16"
        monkeypatch.setenv(TOKEN_ENV, TOKEN)
        default = EmbedderResource(server_url=url)  # EMBEDDING_DTYPE: its default, auto
        vectors, where = default.get_embedder().embed(TEXTS)
        assert where == f"server {url}"
        local, where = EmbedderResource(server_url="").get_embedder().embed(TEXTS)
        assert where == "in-process"
        assert np.abs(vectors - local).max() < 1e-5  # the same batches: the same vectors
    finally:
        srv.shutdown()
        srv.server_close()


def test_the_fake_embedder_fixture_is_deterministic_and_normalised(fake_embedder):
    """The fast tests' stand-in keeps the contract the ingestion relies on."""
    first, _ = fake_embedder.embed(TEXTS)
    again, _ = fake_embedder.embed(list(reversed(TEXTS)))
    assert first.shape[0] == len(TEXTS) and first.dtype == np.float32
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first, again[::-1])  # the same text, the same vector, in any batch
    assert len({row.tobytes() for row in first}) == len(TEXTS)
