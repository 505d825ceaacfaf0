"""Reconciliation: an item file whose run failed for good is ingested later, without a
re-crawl; one that keeps failing is recorded once and not retried in a loop."""

from __future__ import annotations

import duckdb
import pytest

from rag_app.status import recent_errors
from rag_core import reconcile, stores
from rag_core.constants import BATCH_ITEMS_TAG
from rag_core.embedders import SentenceTransformersEmbedder
from resources.embedder import EmbedderResource
from tests.helpers import evaluate_sensor, run_request, write_page


class DownEmbedder(SentenceTransformersEmbedder):
    """Raises on every batch, as an embedder out of memory would."""

    def encode(self, texts, batch_size=None):
        raise RuntimeError("embedder down")


class BrokenEmbedder(EmbedderResource):
    """Hands out the embedder that is down."""

    def get_embedder(self):
        return DownEmbedder(self.model)



def count(settings, sql):
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        return con.execute(sql).fetchone()[0]


def test_a_failed_batch_is_completed_later_without_a_recrawl(instance, settings):
    raw = settings.raw_dir
    keys = [write_page(raw, f"http://site.test/p{i}", f"P{i}", "<p>text</p>") for i in range(3)]
    first = evaluate_sensor(instance, raw)
    broken = BrokenEmbedder(model=settings.embedding_model)
    failed = run_request(
        instance,
        settings,
        first.run_requests[0],
        resources={"embedder": broken},
        raise_on_error=False,
    )
    assert not failed.success
    assert count(settings, "SELECT count(*) FROM ingested_files WHERE state = 'stored'") == 0
    # The next tick finds no new file: without reconciliation the pages were lost for good.
    idle = evaluate_sensor(instance, raw, first.cursor)
    assert not idle.run_requests
    # `rag run` asks for a reconciliation at start; the fault is gone.
    reconcile.request_reconcile(raw)
    again = evaluate_sensor(instance, raw, idle.cursor)
    assert [r.tags[BATCH_ITEMS_TAG] for r in again.run_requests] == ["3"]
    assert run_request(instance, settings, again.run_requests[0]).success
    assert count(settings, "SELECT count(DISTINCT item_id) FROM embeddings") == 3
    assert count(settings, "SELECT count(*) FROM ingested_files WHERE state = 'stored'") == 3
    # All stored: the next reconciliation asks for nothing.
    reconcile.request_reconcile(raw)
    assert not evaluate_sensor(instance, raw, again.cursor).run_requests
    assert set(keys) == {k for k, _ in reconcile_view(settings)}


def reconcile_view(settings):
    return stores.store_at(settings.duckdb_path, 5).ingested_files().items()


@pytest.mark.unit
def test_backoff_then_give_up_once(tmp_path):
    now = 1000.0
    retry, give_up, attempts = reconcile.plan_retries(["a"], {}, now, backoff_s=10)
    assert retry == ["a"] and attempts == {"a": [1, 1010.0]}
    # Within the backoff: not asked again (no tight loop).
    retry, give_up, attempts = reconcile.plan_retries(["a"], attempts, now + 5, backoff_s=10)
    assert retry == [] and give_up == [] and attempts["a"][0] == 1
    retry, _, attempts = reconcile.plan_retries(["a"], attempts, now + 11, backoff_s=10)
    assert retry == ["a"] and attempts["a"] == [2, now + 11 + 20]
    retry, _, attempts = reconcile.plan_retries(["a"], attempts, now + 40, backoff_s=10)
    assert retry == ["a"] and attempts["a"][0] == 3
    retry, give_up, attempts = reconcile.plan_retries(["a"], attempts, now + 1000, backoff_s=10)
    assert retry == [] and give_up == ["a"] and attempts == {}
    # A key stored meanwhile is forgotten.
    assert reconcile.plan_retries([], {"b": [2, 0.0]}, now)[2] == {}
    # Given up: one error row, and its file version is no longer "unstored".
    db = tmp_path / "rag.duckdb"
    for _ in range(2):
        stores.store_at(db, 5).record_given_up({"a": 123}, "gave up", "fp1")
    assert [e["item_id"] for e in recent_errors(db)] == ["a"]
    ingested = stores.store_at(db, 5).ingested_files()
    assert reconcile.unstored([("a", 123)], ingested, "fp1") == []
    assert reconcile.unstored([("a", 124)], ingested, "fp1") == ["a"]  # its file changed
    assert reconcile.unstored([("a", 123)], ingested, "fp2") == ["a"]  # settings changed
