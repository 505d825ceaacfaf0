"""Priority: rule parsing and ordering (pure), the crawl's request order (real Scrapy against a
local server), the sitemap, and the sensor's batches and run priority tag."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_core import priority
from rag_core.constants import BATCH_ITEMS_TAG, ITEMS_PARTITIONS
from rag_core.settings import SettingsError
from sensors.raw_item_files import build_raw_item_files_sensor
from sensors.testing import raw_item_files_context
from tests.helpers import HttpServer, fixed, settings_for, write_page
from tests.test_crawler import _page, _run_crawl

RULES = "/docs/start/*=50, /blog/*=-20, https://status.example.com/*=80, /docs/*=10"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/docs/start/install", 50),  # first match wins over /docs/*
        ("https://example.com/docs/api", 10),
        ("https://example.com/blog/2026/news", -20),
        ("https://status.example.com/incidents", 80),  # whole-URL pattern
        ("https://example.com/about", None),
        ("https://example.com/docs", None),  # /docs/* needs something after the slash
    ],
)
def test_rule_priority(url: str, expected: int | None) -> None:
    assert priority.rule_priority(priority.parse_rules(RULES), url) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/docs/*", "not PATTERN=PRIORITY"),
        ("/docs/*=high", "not a whole number"),
        ("/docs/*=101", "from -100 to 100"),
        ("docs/*=5", "starts with '/'"),
        ("=5", "not PATTERN=PRIORITY"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(priority.PriorityRulesError, match=message):
        priority.parse_rules(text)


def test_priority_rules_setting_is_validated_at_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PRIORITY_RULES=.*PATTERN=PRIORITY.*not a whole"):
        settings_for(tmp_path, PRIORITY_RULES="/docs/*=x")
    assert settings_for(tmp_path, PRIORITY_RULES=" /a/*=5 ").priority_rules == "/a/*=5"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.0", 100),
        ("0.5", 0),
        ("0.0", -100),
        ("0.8", 60),
        ("1.5", None),
        ("x", None),
        (None, None),
    ],
)
def test_sitemap_priority_scale(value: str | None, expected: int | None) -> None:
    assert priority.sitemap_priority(value) == expected


def test_rules_win_over_the_sitemap() -> None:
    rules = priority.parse_rules("/blog/*=-20")
    assert priority.page_priority(rules, "http://x/blog/a", from_sitemap=90) == -20
    assert priority.page_priority(rules, "http://x/docs/a", from_sitemap=90) == 90
    assert priority.page_priority(rules, "http://x/docs/a") == 0


def test_order_and_tiers() -> None:
    ranks = {"c": 5, "d": 5, "e": -1}
    keys = ["a", "b", "c", "d", "e"]
    ordered = priority.order_waiting(keys, ranks)
    assert ordered == ["c", "d", "a", "b", "e"]  # stable: arrival order within a level
    assert priority.first_tier(ordered, ranks) == ["c", "d"]
    assert priority.first_tier(["a", "b"], ranks) == ["a", "b"]
    assert priority.run_priority(["a", "c"], ranks) == 5
    assert priority.first_tier([], ranks) == []


def test_priority_log_is_read_incrementally(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    assert priority.read_priorities(raw) == {}
    priority.append_priority(raw, "k1", 10)
    assert priority.read_priorities(raw) == {"k1": 10}
    priority.append_priority(raw, "k2", -5)
    priority.append_priority(raw, "k1", 0)  # the last line for a key wins
    with open(raw / priority.PRIORITY_LOG, "a") as handle:
        handle.write("k3 7")  # a line still being written is not read yet
    assert priority.read_priorities(raw) == {"k1": 0, "k2": -5}
    with open(raw / priority.PRIORITY_LOG, "a") as handle:
        handle.write("\n")
    assert priority.read_priorities(raw) == {"k1": 0, "k2": -5, "k3": 7}


def test_autothrottle_auto_is_on_only_for_remote_sites(tmp_path: Path) -> None:
    local = settings_for(tmp_path, START_URLS="http://127.0.0.1:8000/,http://localhost/")
    remote = settings_for(tmp_path, START_URLS="https://docs.example.com/")
    assert local.crawl_autothrottle == "auto" and not local.autothrottle_enabled
    assert remote.autothrottle_enabled
    assert not settings_for(tmp_path).autothrottle_enabled  # the demo site is local
    assert not settings_for(
        tmp_path, START_URLS="https://docs.example.com/", CRAWL_AUTOTHROTTLE="false"
    ).autothrottle_enabled
    with pytest.raises(SettingsError, match="CRAWL_AUTOTHROTTLE.*auto, true or false"):
        settings_for(tmp_path, CRAWL_AUTOTHROTTLE="sometimes")


# -- the crawl: Scrapy request priority -----------------------------------------------------


@pytest.fixture()
def ranked_site(tmp_path: Path, http_server):
    """An index linking high pages first, then low ones, plus a sitemap with priorities."""
    site = http_server()
    highs = [f"/docs/start/h{i}.html" for i in range(4)]
    lows = [f"/blog/l{i}.html" for i in range(8)]
    site.routes["/"] = fixed(200, "text/html", _page("Home", *highs, *lows))
    for path in highs + lows + ["/only-in-sitemap.html"]:
        site.routes[path] = fixed(200, "text/html", _page(path, body="<p>text</p>"))
    sitemap = "".join(
        f"<url><loc>{site.url(path)}</loc><priority>{p}</priority></url>"
        for path, p in [("/only-in-sitemap.html", "1.0"), *((path, "0.1") for path in lows)]
    )
    site.routes["/sitemap.xml"] = fixed(
        200,
        "application/xml",
        (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{sitemap}</urlset>'
        ).encode(),
    )
    return site, highs, lows


def _fetch_order(site: HttpServer, prefix: str) -> list[str]:
    return [path for path in site.paths() if path.startswith(prefix)]


@pytest.mark.e2e
def test_crawl_fetches_high_priority_pages_first(ranked_site, tmp_path: Path) -> None:
    site, highs, lows = ranked_site
    code, stats, raw = _run_crawl(
        site, tmp_path, "--concurrency", "1", "--priority-rules", "/docs/start/*=50,/blog/*=-10"
    )
    assert code == 0
    pages = [p for p in site.paths() if p.startswith(("/docs", "/blog"))]
    assert set(pages[: len(highs)]) == set(highs), pages
    assert stats["rag/requests_prioritised"] == len(highs) + len(lows)
    recorded = priority.read_priorities(raw)
    assert sorted(recorded.values()) == sorted([50] * len(highs) + [-10] * len(lows))


@pytest.mark.e2e
def test_without_rules_the_order_is_not_by_priority(ranked_site, tmp_path: Path) -> None:
    # The control for the test above: the same site without rules does not fetch the four
    # /docs/start pages first, so the order above comes from the rules.
    site, highs, _ = ranked_site
    code, stats, raw = _run_crawl(site, tmp_path, "--concurrency", "1")
    assert code == 0
    pages = [p for p in site.paths() if p.startswith(("/docs", "/blog"))]
    assert set(pages[: len(highs)]) != set(highs), pages
    assert "rag/requests_prioritised" not in stats
    assert not (raw / priority.PRIORITY_LOG).exists()


@pytest.mark.e2e
def test_sitemap_pages_are_crawled_with_their_priority(ranked_site, tmp_path: Path) -> None:
    site, highs, lows = ranked_site
    code, stats, raw = _run_crawl(site, tmp_path, "--concurrency", "1", "--sitemaps")
    assert code == 0
    assert "/sitemap.xml" in site.paths()
    assert "/only-in-sitemap.html" in site.paths()  # linked from nowhere
    pages = [p for p in site.paths() if p.endswith(".html")]
    # Sitemap priority 1.0 first, the 0.1 pages (-80) last, unlisted (0) in between; one low
    # page may go while the index is parsed, before its links are queued (one request slot).
    assert pages[0] == "/only-in-sitemap.html"
    assert set(pages[-len(lows) + 1 :]) <= set(lows), pages
    assert stats["rag/sitemap_urls"] == 1 + len(lows)
    # The sitemap response is not a page.
    assert stats["pages_crawled"] == 1 + len(highs) + len(lows) + 1


# -- the sensor: batches by priority, Dagster's run priority tag -----------------------------


@pytest.mark.dagster
def test_sensor_puts_the_highest_priority_items_in_the_next_run(instance, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    lows = [write_page(raw, f"http://site.test/blog/l{i}", f"L{i}", "<p>l</p>") for i in range(5)]
    highs = [write_page(raw, f"http://site.test/docs/h{i}", f"H{i}", "<p>h</p>") for i in range(3)]
    for key in lows:
        priority.append_priority(raw, key, -10)
    for key in highs:
        priority.append_priority(raw, key, 50)
    sensor = build_raw_item_files_sensor("streaming")
    context = raw_item_files_context(instance, raw)
    result = sensor(context)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    order = instance.get_dynamic_partitions(ITEMS_PARTITIONS)
    start = order.index(request.tags["dagster/asset_partition_range_start"])
    end = order.index(request.tags["dagster/asset_partition_range_end"])
    # The run's range holds exactly the high-priority items, although they came last.
    assert set(order[start : end + 1]) == set(highs)
    assert request.tags["dagster/priority"] == "50"
    assert request.tags[BATCH_ITEMS_TAG] == "3"
    # The next tick (no run in flight) takes the low-priority ones.
    context = raw_item_files_context(instance, raw, cursor=result.cursor)
    second = sensor(context).run_requests[0]
    order = instance.get_dynamic_partitions(ITEMS_PARTITIONS)
    start = order.index(second.tags["dagster/asset_partition_range_start"])
    end = order.index(second.tags["dagster/asset_partition_range_end"])
    assert set(order[start : end + 1]) == set(lows)
    assert second.tags["dagster/priority"] == "-10"


@pytest.mark.dagster
def test_sensor_without_priorities_adds_no_tag(instance, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    for i in range(3):
        write_page(raw, f"http://site.test/p{i}", f"P{i}", "<p>p</p>")
    context = raw_item_files_context(instance, raw)
    request = build_raw_item_files_sensor("streaming")(context).run_requests[0]
    assert "dagster/priority" not in request.tags
    assert request.tags[BATCH_ITEMS_TAG] == "3"
