"""A failed re-crawl never empties the index; a large prune needs confirmation (real daemon)."""

from __future__ import annotations

import pytest

from rag_app.instance import open_instance
from rag_core.constants import ITEMS_PARTITIONS
from tests.helpers import build_site
from tests.test_e2e_daemon import rag, rag_run, table

pytestmark = pytest.mark.e2e
PAGES = 8


@pytest.fixture
def site(tmp_path, local_site):
    """The test site, which can go down (503 to everything) or lose its links."""
    root = tmp_path / "www"
    build_site(root, PAGES)
    served = local_site(root)
    return served.mode, served.url


def stores(data):
    with open_instance(data / "dagster_home") as instance:
        partitions = sorted(instance.get_dynamic_partitions(ITEMS_PARTITIONS))
    return {
        "files": sorted(p.name for p in (data / "raw").glob("item_*.json")),
        "partitions": partitions,
        **{
            name: table(data, f"SELECT count(*) FROM {name}")[0][0]
            for name in ("raw_items", "documents", "chunks", "embeddings")
        },
    }


def again(data, url, *args, **env):
    return rag(
        data, "run", "--start-url", url, *args,
        PRUNE_REMOVED="true", CRAWL_CONCURRENCY="2", RUN_TIMEOUT_SECONDS="300", **env,
    )  # fmt: skip


def test_failed_recrawl_keeps_everything_and_large_prune_needs_confirmation(tmp_path, site):
    mode, url = site
    data = tmp_path / "data"
    rag_run(data, url, "streaming", PRUNE_REMOVED="true")
    before = stores(data)
    assert len(before["files"]) == PAGES + 1 and before["documents"] == PAGES + 1

    # The site answers 503 to everything: nothing may be removed, and rag run must say why.
    mode["value"] = "down"
    down = again(data, url)
    assert down.returncode != 0, down.stdout[-2000:]
    assert "start URL" in down.stderr and "503" in down.stderr, down.stderr[-2000:]
    assert stores(data) == before

    # Every page but the home page is unreachable: with one miss enough, the plan would
    # remove 8 of 9 pages, far above PRUNE_MAX_FRACTION: refused, reported, nothing removed.
    mode["value"] = "orphaned"
    refused = again(data, url, PRUNE_AFTER_MISSES="1")
    assert refused.returncode != 0
    assert "prune refused" in refused.stderr and "--confirm-prune" in refused.stderr
    after_refusal = stores(data)
    assert after_refusal["files"] == before["files"]
    assert after_refusal["partitions"] == before["partitions"]
    assert "prune refused: it would remove 8 of 9" in rag(data, "status").stdout

    # Confirmed: the prune goes through and the refusal is cleared.
    confirmed = again(data, url, "--confirm-prune", PRUNE_AFTER_MISSES="1")
    assert confirmed.returncode == 0, confirmed.stdout[-2000:] + confirmed.stderr[-2000:]
    final = stores(data)
    assert len(final["files"]) == 1 and final["documents"] == 1
    assert len(final["partitions"]) == 1
    assert "prune refused" not in rag(data, "status").stdout
