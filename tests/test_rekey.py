"""A data folder of the first key scheme (16 hex digits) moves to readable keys, no re-crawl."""

from __future__ import annotations

import json

import dagster as dg

from rag_app.status import legacy_warning
from rag_assets.prune import build_removed_pages
from rag_core import prune
from rag_core.constants import INGEST_JOB, ITEMS_PARTITIONS, PRUNE_JOB
from rag_core.ids import canonical_url, is_legacy_key, item_key, legacy_item_key
from rag_core.items import CrawledItem, item_file_name, write_item_atomically
from rag_core.rekey import legacy_keys, rekey_item_files
from rag_core.stores import duckdb_store as store
from sensors.raw_item_files import build_raw_item_files_sensor
from sensors.testing import raw_item_files_context
from tests.helpers import page_html, paragraphs, run_request, settings_for

URLS = ["http://docs.test/install/windows.html", "http://docs.test/faq", "http://docs.test/"]
TOPICS = ["windows", "faq", "home"]


def write_legacy_page(raw, url: str, topic: str) -> str:
    """An item file as the crawler wrote it before readable keys."""
    key = legacy_item_key(url)
    item = CrawledItem(
        item_id=key,
        url=canonical_url(url),
        status=200,
        html=page_html(topic.title(), paragraphs(topic, 4)),
        title=topic.title(),
        content_type="text/html",
    )
    write_item_atomically(item, raw)
    assert (raw / f"item_{key}.json").is_file()
    return key


def tick(instance, raw, cursor):
    return build_raw_item_files_sensor("streaming")(
        raw_item_files_context(instance, raw, cursor=cursor)
    )


def run_job_request(instance, settings, request) -> None:
    """Carry out a run request of the sensor in-process, as the daemon would launch it."""
    if request.job_name == PRUNE_JOB:
        pruner = build_removed_pages(False)
        result = run_request(instance, settings, request, assets=[pruner], selection=[pruner.key])
    else:
        assert request.job_name == INGEST_JOB
        result = run_request(instance, settings, request)
    assert result.success


def item_ids(settings) -> dict[str, set[str]]:
    with store.connect(settings.duckdb_path, read_only=True) as con:
        return {
            table: {r[0] for r in con.execute(f"SELECT DISTINCT item_id FROM {table}").fetchall()}
            for table in store.ITEM_TABLES
        }


def test_legacy_folder_is_rekeyed_from_its_item_files_and_nothing_is_orphaned(tmp_path):
    settings = settings_for(tmp_path / "data", EMBEDDING_SERVER="false", USE_NEO4J="false")
    raw = settings.raw_dir
    old_keys = [write_legacy_page(raw, url, t) for url, t in zip(URLS, TOPICS, strict=True)]
    broken = "00000000000000ff"
    (raw / f"item_{broken}.json").write_text('{"item_id": "00000000000000ff", "url": "ht')
    new_keys = [item_key(url) for url in URLS]
    assert all(is_legacy_key(k) for k in old_keys) and not any(map(is_legacy_key, new_keys))

    with dg.instance_for_test() as instance:
        # Before: the old scheme still works (listed, registered, ingested under its keys).
        first = tick(instance, raw, None)
        assert set(instance.get_dynamic_partitions(ITEMS_PARTITIONS)) == {*old_keys, broken}
        run_job_request(instance, settings, first.run_requests[0])
        assert item_ids(settings)["embeddings"] == set(old_keys)
        assert "16-hex" in (legacy_warning(raw) or "")

        report = rekey_item_files(raw)

        assert report.moved == dict(zip(old_keys, new_keys, strict=True))
        assert set(report.unreadable) == {broken}
        assert any(broken in line and "not valid JSON" in line for line in report.lines())
        # Files renamed, item_id = the new key, nothing re-crawled (the HTML is the old one).
        on_disk = sorted(p.name for p in raw.glob("item_*.json"))
        assert on_disk == sorted([*(item_file_name(k) for k in new_keys), f"item_{broken}.json"])
        for key in new_keys:
            data = json.loads((raw / item_file_name(key)).read_text())
            assert data["item_id"] == key
        assert set(prune.read_removals(raw)) == set(old_keys)
        assert legacy_keys(raw) == [broken]  # only the unreadable one is left, and reported
        assert rekey_item_files(raw).moved == {}  # a second pass changes nothing

        # The sensor removes the old keys first (prune run), then ingests the new ones.
        second = tick(instance, raw, first.cursor)
        assert [r.job_name for r in second.run_requests] == [PRUNE_JOB]
        run_job_request(instance, settings, second.run_requests[0])
        third = tick(instance, raw, second.cursor)
        assert [r.job_name for r in third.run_requests] == [INGEST_JOB]
        run_job_request(instance, settings, third.run_requests[0])

        assert set(instance.get_dynamic_partitions(ITEMS_PARTITIONS)) == {*new_keys, broken}
        assert prune.read_removals(raw) == {}
    ids = item_ids(settings)
    for table in store.ITEM_TABLES:
        assert ids[table] == set(new_keys), table  # the DuckDB item_id is the partition key
