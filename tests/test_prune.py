"""Safe pruning: what a crawl proves, consecutive misses, the size limit, the locked request."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from rag_core import prune
from rag_core.ids import item_key
from rag_core.prune import CrawlEvidence, plan_prune

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "http://127.0.0.1:9"
KEYS = {f"p{i}": item_key(f"{HOST}/p{i}.html") for i in range(10)}
STORED = set(KEYS.values())


def evidence(seen=(), gone=(), failed=(), start_failures=None, ok=True, ran_to_end=True):
    return CrawlEvidence(
        seen={KEYS[p] for p in seen},
        gone_urls=[f"{HOST}/{p}.html" for p in gone],
        failed_urls=[f"{HOST}/{p}.html" for p in failed],
        ok_hosts={"127.0.0.1:9"} if ok else set(),
        start_failures=start_failures or {},
        ran_to_end=ran_to_end,
    )


ALL_BUT_P9 = [f"p{i}" for i in range(9)]


def test_a_site_that_fails_every_request_proves_nothing():
    # What a crawl of a server answering 503 to everything looks like.
    down = evidence(seen=(), failed=["p0"], start_failures={f"{HOST}/": "HTTP 503"}, ok=False)
    plan = plan_prune(STORED, down, {}, after_misses=1, max_fraction=1.0)
    assert not plan.complete
    assert plan.removals == {} and plan.refused is None


def test_a_failed_request_to_a_stored_page_makes_the_crawl_incomplete():
    ev = evidence(seen=[f"p{i}" for i in range(8)], failed=["p8"])
    plan = plan_prune(STORED, ev, {KEYS["p9"]: 5}, after_misses=1, max_fraction=1.0)
    assert not plan.complete and plan.removals == {}
    assert plan.misses == {KEYS["p9"]: 5}  # kept, neither raised nor cleared


def test_an_unreached_page_is_removed_only_after_consecutive_complete_crawls():
    first = plan_prune(STORED, evidence(seen=ALL_BUT_P9), {}, after_misses=2)
    assert first.complete and first.removals == {} and first.misses == {KEYS["p9"]: 1}
    # Reached again: the count starts over.
    back = plan_prune(STORED, evidence(seen=[*ALL_BUT_P9, "p9"]), first.misses, after_misses=2)
    assert back.misses == {} and back.removals == {}
    # An incomplete crawl in between neither counts nor resets.
    second = plan_prune(
        STORED, evidence(seen=ALL_BUT_P9, ran_to_end=False), first.misses, after_misses=2
    )
    assert second.removals == {} and second.misses == {KEYS["p9"]: 1}
    third = plan_prune(STORED, evidence(seen=ALL_BUT_P9), second.misses, after_misses=2)
    assert set(third.removals) == {KEYS["p9"]} and third.misses == {}


def test_a_404_counts_only_when_the_host_answered():
    ev = evidence(seen=ALL_BUT_P9, gone=["p9"])
    assert set(plan_prune(STORED, ev, {}).removals) == {KEYS["p9"]}  # at once
    no_2xx = evidence(seen=(), gone=["p9"], ok=False, ran_to_end=True)
    assert plan_prune(STORED, no_2xx, {}, max_fraction=1.0).removals == {}


def test_a_large_prune_is_refused_unless_confirmed():
    ev = evidence(seen=["p0", "p1"], gone=[f"p{i}" for i in range(2, 10)])
    refused = plan_prune(STORED, ev, {}, max_fraction=0.2)
    assert refused.removals == {} and refused.refused["would_remove"] == 8
    assert "rag run --confirm-prune" in prune.describe_refusal(refused.refused)
    confirmed = plan_prune(STORED, ev, {}, max_fraction=0.2, confirmed=True)
    assert len(confirmed.removals) == 8 and confirmed.refused is None
    # At the limit exactly (2 of 10) is allowed.
    small = plan_prune(STORED, evidence(seen=ALL_BUT_P9[:8], gone=["p8", "p9"]), {})
    assert len(small.removals) == 2


def _add_many(raw_dir: str, worker: int, n: int) -> None:
    for i in range(n):
        prune.add_removals(Path(raw_dir), {f"w{worker}-{i}": "gone"})


def test_removal_requests_are_never_lost_or_resurrected(tmp_path):
    """Writers in several processes at once (the crawl adds, the prune run clears)."""
    handled = {f"old-{i}": "gone" for i in range(40)}
    prune.add_removals(tmp_path, handled)
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_add_many, args=(str(tmp_path), w, 60)) for w in range(3)]
    for proc in workers:
        proc.start()
    for key, reason in handled.items():  # the prune run clearing what it handled, one by one
        prune.clear_removals(tmp_path, {key: reason})
    for proc in workers:
        proc.join()
    left = prune.read_removals(tmp_path)
    assert set(left) == {f"w{w}-{i}" for w in range(3) for i in range(60)}


def test_withdrawn_when_reached_again(tmp_path):
    prune.add_removals(tmp_path, {"a": "gone", "b": "gone"})
    prune.withdraw_removals(tmp_path, {"a"})
    assert prune.read_removals(tmp_path) == {"b": "gone"}


@pytest.fixture
def down_site(tmp_path, local_site):
    """A site answering 503 to everything."""
    site = local_site(tmp_path / "www", delay_s=0)
    site.mode["value"] = "down"
    return site.url


@pytest.mark.e2e
def test_real_crawl_of_a_503_site_reports_its_start_url_failed(tmp_path, down_site):
    """A real Scrapy crawl: Scrapy says `finished`, the evidence says the site was down."""
    stats_file = tmp_path / "stats.json"
    subprocess.run(
        [sys.executable, "-m", "crawler", "--start-url", down_site, "--raw-dir",
         str(tmp_path / "raw"), "--stats-file", str(stats_file)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    stats = json.loads(stats_file.read_text())
    assert stats["finish_reason"] == "finished"
    assert stats["start_failures"] == {down_site: "HTTP 503"}
    assert stats["ok_hosts"] == []
    ev = CrawlEvidence.from_stats(stats | {"ran_to_end": True}, set())
    stored = {item_key(down_site), item_key(down_site + "a.html")}
    assert not ev.complete(stored)
    assert plan_prune(stored, ev, {}, after_misses=1, max_fraction=1.0).removals == {}

