"""A changed index fingerprint re-indexes every page from its item file, in bounded batches;
search never mixes fingerprints; the asset check fails while two remain."""

from __future__ import annotations

import duckdb
import pytest

from rag_app.search import search
from rag_assets.checks import one_index_fingerprint
from rag_core import reconcile
from rag_core.constants import BATCH_ITEMS_TAG
from rag_core.fingerprint import settings_fingerprint
from resources.duckdb_store import DuckDBStore
from sensors.raw_item_files import build_raw_item_files_sensor
from tests.helpers import evaluate_sensor, paragraphs, run_request, settings_for, write_page


def rows(settings, sql):
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_changed_chunking_reindexes_everything_and_search_never_mixes(
    instance,
    tmp_path,
):
    data = tmp_path / "data"
    old = settings_for(data, EMBEDDING_SERVER="false", CHUNK_SIZE_TOKENS="224")
    new = settings_for(data, EMBEDDING_SERVER="false", CHUNK_SIZE_TOKENS="96")
    old_fp, new_fp = settings_fingerprint(old), settings_fingerprint(new)
    assert old_fp != new_fp
    raw = old.raw_dir
    keys = [
        write_page(raw, f"http://site.test/p{i}", f"P{i}", paragraphs(f"topic {i}", 8))
        for i in range(4)
    ]
    before = build_raw_item_files_sensor("streaming", fingerprint=lambda: old_fp)
    first = evaluate_sensor(instance, raw, sensor=before)
    run_request(instance, old, first.run_requests[0])
    assert rows(old, "SELECT DISTINCT fingerprint FROM embeddings") == [(old_fp,)]

    # The settings change; `rag run` starts (it asks for a reconciliation): every page is
    # re-processed from its item file, in runs of at most MAX_BATCH_ITEMS (3 here).
    after = build_raw_item_files_sensor("streaming", max_items=3, fingerprint=lambda: new_fp)
    reconcile.request_reconcile(raw)
    tick = evaluate_sensor(instance, raw, first.cursor, sensor=after)
    assert [r.tags[BATCH_ITEMS_TAG] for r in tick.run_requests] == ["3"]
    run_request(instance, new, tick.run_requests[0])
    # Half way: two fingerprints; the check says so and search serves only the new one.
    check = one_index_fingerprint(duckdb=DuckDBStore(path=str(new.duckdb_path)))
    assert not check.passed
    sql = f"SELECT chunk_id FROM embeddings WHERE fingerprint = '{new_fp}'"
    served = {chunk_id for (chunk_id,) in rows(new, sql)}
    hits = search(new, "topic", k=50)
    assert hits and {h.chunk_id for h in hits} <= served
    rest = evaluate_sensor(instance, raw, tick.cursor, sensor=after)
    assert [r.tags[BATCH_ITEMS_TAG] for r in rest.run_requests] == ["1"]
    run_request(instance, new, rest.run_requests[0])

    assert rows(new, "SELECT DISTINCT fingerprint FROM embeddings") == [(new_fp,)]
    assert {r[0] for r in rows(new, "SELECT DISTINCT item_id FROM embeddings")} == set(keys)
    assert rows(new, "SELECT max(token_count) FROM chunks")[0][0] <= 96
    assert one_index_fingerprint(duckdb=DuckDBStore(path=str(new.duckdb_path))).passed
    # Done: nothing more is asked for.
    reconcile.request_reconcile(raw)
    assert not evaluate_sensor(instance, raw, rest.cursor, sensor=after).run_requests


@pytest.mark.unit
def test_coverage_is_shown_while_a_reindex_is_under_way():
    from rag_app.runner import Progress
    from rag_app.status import describe_coverage

    coverage = {
        "fingerprint": "new", "pages_current": 3, "pages_other": 1,
        "other_fingerprints": ["old"], "files": 4,
    }  # fmt: skip
    text = describe_coverage(coverage)
    assert text == (
        "Index new: 3 of 4 pages; re-index under way, 1 page(s) still under old (not searched)"
    )
    counts = dict.fromkeys(("files", "documents", "chunks", "embeddings", "errors"), 0)
    assert Progress(1.0, counts, 1, text).line().endswith("| " + text)
    done = describe_coverage(coverage | {"pages_current": 4, "pages_other": 0})
    assert done == "Index new: 4 of 4 pages"


@pytest.mark.unit
def test_every_setting_that_shapes_chunks_or_vectors_changes_the_fingerprint(tmp_path):
    """Chunk size, overlap, the context header and small-section merging each make
    another index; the data folder does not."""
    base = settings_fingerprint(settings_for(tmp_path / "a"))
    assert settings_fingerprint(settings_for(tmp_path / "b")) == base
    for env in (
        {"CHUNK_SIZE_TOKENS": "128"},
        {"CHUNK_OVERLAP_TOKENS": "16"},
        {"CHUNK_CONTEXT_HEADER": "true"},
        {"CHUNK_MIN_TOKENS": "0"},
    ):
        assert settings_fingerprint(settings_for(tmp_path / "a", **env)) != base, env


@pytest.mark.unit
def test_the_fingerprint_records_the_dtype_actually_used(tmp_path, monkeypatch):
    """EMBEDDING_DTYPE=auto (the default) is bfloat16 on a CPU with native BF16 and float32
    elsewhere; the fingerprint is that of the resolved dtype, so bfloat16 and float32 vectors
    never mix, and a switch (the setting, or the index moved to another CPU) re-embeds."""
    from rag_core.embedders import sentence_transformers as st

    def fingerprint(**env):
        return settings_fingerprint(
            settings_for(tmp_path, EMBEDDING_PROVIDER="sentence-transformers", **env)
        )

    f32, b16 = fingerprint(EMBEDDING_DTYPE="float32"), fingerprint(EMBEDDING_DTYPE="bfloat16")
    assert f32 != b16
    monkeypatch.setattr(st, "cpu_has_native_bf16", lambda: True)
    assert fingerprint() == fingerprint(EMBEDDING_DTYPE="auto") == b16
    monkeypatch.setattr(st, "cpu_has_native_bf16", lambda: False)
    assert fingerprint() == fingerprint(EMBEDDING_DTYPE="auto") == f32


@pytest.mark.unit
def test_auto_resolves_from_the_cpus_flags():
    """auto follows /proc/cpuinfo (avx512_bf16 or amx_bf16); the embedder, its server client
    and its run metadata all name the resolved dtype."""
    from rag_core.embedders import create_embedder
    from rag_core.embedders import sentence_transformers as st

    flags = open("/proc/cpuinfo").read().split()
    native = any(f in flags for f in ("avx512_bf16", "amx_bf16"))
    assert st.cpu_has_native_bf16() is native
    expected = "bfloat16" if native else "float32"
    assert st.resolve_dtype("auto") == expected
    assert st.resolve_dtype("float32") == "float32"
    embedder = create_embedder(dtype="auto")
    assert embedder.dtype == expected and embedder.describe()["dtype"] == expected
    client = create_embedder(dtype="auto", server_url="http://127.0.0.1:9")
    assert client.dtype == expected
    # Questions are embedded in float32 whatever the index's dtype (README, Retrieval quality).
    assert create_embedder(dtype="auto", for_queries=True).dtype == "float32"
