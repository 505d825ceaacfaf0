"""Ingestion assets materialised in-process (ephemeral instance, real DuckDB, real MiniLM)."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from rag_core.chunking import ModelTokenizer
from resources.embedder import EmbedderResource
from tests.helpers import materialize_range, paragraphs, write_page


def metadata(result, asset):
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.path == [asset]]
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


def rows(settings, sql):
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(sql).fetchall()


@pytest.fixture
def site(settings):
    raw = settings.raw_dir
    keys = [
        write_page(
            raw,
            "http://docs.test/install",
            "Install",
            "<h2>Linux</h2>"
            + paragraphs("installing on Linux", 30)
            + "<h2>Windows</h2>"
            + paragraphs("installing on Windows", 5),
        ),
        write_page(
            raw,
            "http://docs.test/faq",
            "FAQ",
            "<ul><li>Is it free? Yes.</li><li>Does it scale? Yes.</li></ul>",
        ),
        write_page(
            raw,
            "http://docs.test/config",
            "Configuration",
            "<pre><code>retries: 3\ntimeout: 30</code></pre>"
            + paragraphs("configuring retries", 4),
        ),
    ]
    broken = "0123456789abcdef"
    (raw / f"item_{broken}.json").write_text('{"item_id": "0123456789abcdef", "url": ')  # truncated
    empty = write_page(raw, "http://docs.test/empty", "", "")
    return settings, keys, broken, empty


def test_batch_ingests_good_items_and_records_bad_ones(instance, site):
    settings, keys, broken, empty = site
    result = materialize_range(instance, settings, [*keys, broken, empty])
    assert metadata(result, "embeddings")["errors"] == 1 + 1
    assert metadata(result, "embeddings")["errors_by_stage"] == {"raw_items": 1, "documents": 1}
    assert sorted(r[0] for r in rows(settings, "SELECT item_id FROM documents")) == sorted(keys)
    errors = dict(
        ((r[0], r[1]), r[2])
        for r in rows(settings, "SELECT item_id, stage, error FROM ingest_errors")
    )
    assert "not valid JSON" in errors[(broken, "raw_items")]
    assert "no main text" in errors[(empty, "documents")]
    texts = dict(rows(settings, "SELECT item_id, text FROM documents"))
    install = texts[keys[0]]
    assert install.startswith("# Install")
    assert "## Windows" in install
    assert "All rights reserved" not in install and "Home" not in install.split("\n")[0]
    assert "retries: 3\ntimeout: 30" in texts[keys[2]]
    # Every chunk has exactly one normalised 384-dimensional vector.
    chunk_ids = {r[0] for r in rows(settings, "SELECT chunk_id FROM chunks")}
    vectors = rows(settings, "SELECT chunk_id, model, embedding FROM embeddings")
    assert {v[0] for v in vectors} == chunk_ids and len(vectors) == len(chunk_ids)
    assert all(len(v[2]) == 384 for v in vectors)
    assert {v[1] for v in vectors} == {"sentence-transformers/all-MiniLM-L6-v2"}
    norms = np.linalg.norm(np.array([v[2] for v in vectors]), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-4)
    assert metadata(result, "embeddings")["embedded"] == len(chunk_ids)
    # Per-partition figures: each asset's materialisation of an item's partition carries the
    # item's own figures (no extra observation events).
    per_item = {}
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        per_item.setdefault(mat.asset_key.path[0], {})[mat.partition] = meta
    assert sorted(per_item) == ["chunks", "documents", "embeddings", "raw_items"]
    for asset, partitions in per_item.items():
        assert set(partitions) == {*keys, broken, empty}, asset
    assert per_item["raw_items"][keys[0]]["title"] == "Install"
    assert per_item["chunks"][keys[0]]["vectors"] > 1
    assert per_item["chunks"][keys[0]]["chunks"] == per_item["chunks"][keys[0]]["vectors"]
    assert per_item["chunks"][broken]["vectors"] == 0
    assert "not valid JSON" in per_item["chunks"][broken]["error"]
    assert "no main text" in per_item["documents"][empty]["error"]
    assert not result.get_asset_observation_events()


def test_chunks_fit_the_model_and_follow_headings(instance, site):
    settings, keys, _, _ = site
    materialize_range(instance, settings, keys)
    # The chunker's tokenizer is the embedder's: the model's own tokenizer.json.
    tokenizer = EmbedderResource.from_settings(settings).get_embedder().tokenizer
    assert isinstance(tokenizer, ModelTokenizer)
    found = rows(
        settings,
        "SELECT item_id, chunk_index, heading, text, token_count FROM chunks "
        "ORDER BY item_id, chunk_index",
    )
    assert len(found) > 5
    for _, _, _, text, count in found:
        # With [CLS] and [SEP] the model sees at most max_seq_length tokens: nothing is cut off.
        assert tokenizer.count(text) == count
        assert count + tokenizer.special_tokens <= tokenizer.max_seq_length
    install = [r for r in found if r[0] == keys[0]]
    assert [r[1] for r in install] == list(range(len(install)))
    assert any("Windows" in (r[2] or "") for r in install)


def test_rerun_is_idempotent_and_reuses_vectors(instance, site):
    settings, keys, _, _ = site
    materialize_range(instance, settings, keys)
    before = rows(settings, "SELECT chunk_id, embedding FROM embeddings ORDER BY chunk_id")
    again = materialize_range(instance, settings, keys)
    after = rows(settings, "SELECT chunk_id, embedding FROM embeddings ORDER BY chunk_id")
    assert before == after
    assert metadata(again, "embeddings")["embedded"] == 0
    assert metadata(again, "embeddings")["reused"] == len(after)
    for table in ("raw_items", "documents"):
        assert rows(settings, f"SELECT count(*), count(DISTINCT item_id) FROM {table}")[0] == (3, 3)


def test_changed_page_replaces_its_chunks(instance, site):
    settings, keys, _, _ = site
    materialize_range(instance, settings, keys)
    old = {r[0] for r in rows(settings, f"SELECT chunk_id FROM chunks WHERE item_id = '{keys[1]}'")}
    write_page(
        settings.raw_dir,
        "http://docs.test/faq",
        "FAQ",
        "<p>Completely new answers about licensing and support plans.</p>",
    )
    result = materialize_range(instance, settings, [keys[1]])
    new = {r[0] for r in rows(settings, f"SELECT chunk_id FROM chunks WHERE item_id = '{keys[1]}'")}
    assert new and not (new & old)
    stored = {
        r[0] for r in rows(settings, f"SELECT chunk_id FROM embeddings WHERE item_id = '{keys[1]}'")
    }
    assert stored == new
    assert metadata(result, "embeddings")["embedded"] == len(new)


@pytest.mark.parametrize(
    ("n", "first", "size", "expected"),
    [(10, 2, 4, [2, 4, 4]), (3, 4, 32, [3]), (0, 4, 32, []), (9, 4, 5, [4, 5])],
)
@pytest.mark.unit
def test_sub_batches_cover_the_keys_in_order(n, first, size, expected):
    from rag_assets.ingest import sub_batches

    keys = [f"k{i}" for i in range(n)]
    subs = list(sub_batches(keys, first, size))
    assert [len(s) for s in subs] == expected
    assert [k for s in subs for k in s] == keys


def test_memory_is_bounded_by_the_sub_batch_not_the_batch(instance, settings, monkeypatch):
    """Issue 9, point 7: a batch many times the sub-batch size never holds more than
    PIPELINE_DEPTH sub-batches between reading and publishing, and is stored whole."""
    import rag_assets.ingest as ingest

    monkeypatch.setattr(ingest, "SUB_BATCH_ITEMS", 3)
    monkeypatch.setattr(ingest, "FIRST_SUB_BATCH_ITEMS", 1)
    keys = [
        write_page(settings.raw_dir, f"http://docs.test/p{i}", f"Page {i}",
                   paragraphs(f"topic number {i} explained", 2))
        for i in range(20)
    ]  # fmt: skip
    result = materialize_range(instance, settings, keys)
    meta = metadata(result, "embeddings")
    assert 0 < meta["peak_items_held"] <= ingest.PIPELINE_DEPTH * 3
    assert meta["published_items"] == 20
    stored = {r[0] for r in rows(settings, "SELECT DISTINCT item_id FROM embeddings")}
    assert stored == set(keys)
    # The encoder got its first (one-item) sub-batch before the rest of the batch was read:
    # at most the next sub-batch was prepared meanwhile.
    assert 1 <= meta["items_read_at_first_encode"] <= 1 + 3


def test_asset_checks_catch_missing_wrong_and_non_finite_vectors(instance, site, tmp_path):
    from rag_assets.checks import (
        embedding_dimension_matches_model,
        embeddings_are_finite,
        every_chunk_embedded,
    )
    from resources.duckdb_store import DuckDBStore

    settings, keys, _, _ = site
    materialize_range(instance, settings, keys)
    db = DuckDBStore(path=str(settings.duckdb_path))
    embedder = EmbedderResource()
    assert every_chunk_embedded(duckdb=db).passed
    assert embedding_dimension_matches_model(duckdb=db, embedder=embedder).passed
    assert embeddings_are_finite(duckdb=db).passed
    from rag_core.stores import duckdb_store

    with duckdb_store.connect(settings.duckdb_path) as con:
        rows = con.execute("SELECT chunk_id FROM embeddings ORDER BY 1 LIMIT 2").fetchall()
        first, second = [r[0] for r in rows]
        con.execute("DELETE FROM embeddings WHERE chunk_id = ?", [first])
        con.execute(
            "UPDATE embeddings SET embedding = list_transform(embedding::FLOAT[], "
            "lambda x: 'nan'::FLOAT)::FLOAT[384] WHERE chunk_id = ?",
            [second],
        )
    missing = every_chunk_embedded(duckdb=db)
    assert not missing.passed and missing.metadata["chunks_without_vector"].value == 1
    finite = embeddings_are_finite(duckdb=db)
    assert not finite.passed and finite.metadata["non_finite_vectors"].value == 1
    # A model folder that declares 768 dimensions: the stored 384-wide vectors do not fit it.
    wide = tmp_path / "wide-model"
    (wide / "1_Pooling").mkdir(parents=True)
    (wide / "tokenizer.json").write_text("{}")
    (wide / "1_Pooling" / "config.json").write_text('{"word_embedding_dimension": 768}')
    other = embedding_dimension_matches_model(
        duckdb=db, embedder=EmbedderResource(model=str(wide))
    )
    assert not other.passed and other.metadata["vectors_with_other_dimension"].value > 0


def test_search_shows_a_page_stored_under_two_urls_once(instance, settings):
    from rag_app.search import search

    body = paragraphs("rotating the signing keys", 2)
    keys = [
        write_page(settings.raw_dir, "http://docs.test/", "Home", body),
        write_page(settings.raw_dir, "http://docs.test/index.html", "Home", body),
        write_page(settings.raw_dir, "http://docs.test/other", "Other", paragraphs("billing", 2)),
    ]
    materialize_range(instance, settings, keys)
    hits = search(settings, "rotating the signing keys", 3)
    assert len({(h.text, h.title) for h in hits}) == len(hits)
    assert sum(1 for h in hits if h.title == "Home") == 1
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
