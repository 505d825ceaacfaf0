"""Command line: ``python -m crawler --start-url URL ...`` runs one crawl and exits 0 on success."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from scrapy.crawler import CrawlerProcess
from scrapy.settings import Settings

from crawler.content import canonical_http_url
from crawler.middlewares import STAT_REFUSED, STAT_REFUSED_URLS
from crawler.spiders.site import (
    STAT_FAILED,
    STAT_GONE,
    STAT_OK_HOSTS,
    STAT_START_FAILURES,
    SiteSpider,
)
from rag_core.priority import PriorityRulesError, parse_rules
from rag_core.redact import install_masking, mask_value

logger = logging.getLogger("crawler.cli")

SUCCESS_REASONS = frozenset({"finished", "closespider_pagecount"})


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of the crawler CLI."""
    parser = argparse.ArgumentParser(
        prog="python -m crawler", description="Crawl a site into RAW_ITEMS_DIR item files."
    )
    add = parser.add_argument
    add("--start-url", action="append", required=True, metavar="URL", help="repeatable")
    add(
        "--allowed-domain",
        action="append",
        default=[],
        metavar="D",
        help="repeatable; default: the hosts of the start URLs",
    )
    add(
        "--max-pages",
        type=int,
        default=0,
        metavar="N",
        help="CLOSESPIDER_PAGECOUNT; also caps saved pages (0 = no limit)",
    )
    add(
        "--max-page-chars",
        type=int,
        default=0,
        metavar="N",
        help="MAX_PAGE_CHARS: longer pages are truncated and flagged (0 = the setting's default)",
    )
    add(
        "--seen-keys-file",
        metavar="PATH",
        help="append the item key of every page reached, changed or not (for pruning)",
    )
    add("--depth-limit", type=int, default=0, metavar="N", help="DEPTH_LIMIT (0 = no limit)")
    add(
        "--include",
        action="append",
        default=[],
        metavar="RE",
        help="follow only links matching one of these regexes (repeatable)",
    )
    add(
        "--exclude",
        action="append",
        default=[],
        metavar="RE",
        help="never follow links matching these regexes; wins over --include (repeatable)",
    )
    add("--raw-dir", metavar="PATH", help="RAW_ITEMS_DIR (default from crawler.settings)")
    add("--jobdir", metavar="PATH", help="Scrapy JOBDIR: a killed crawl resumes from here")
    add("--autothrottle", action="store_true", help="enable AutoThrottle")
    add(
        "--concurrency",
        type=int,
        metavar="N",
        help="CONCURRENT_REQUESTS and CONCURRENT_REQUESTS_PER_DOMAIN",
    )
    add(
        "--allow-private-networks",
        action="store_true",
        help="ALLOW_PRIVATE_NETWORKS: accept responses from internal addresses",
    )
    add(
        "--max-download-bytes",
        type=int,
        metavar="N",
        help="bodies are cut at N bytes (warn at N/4); over 4N announced: not downloaded",
    )
    add("--max-links-per-page", type=int, metavar="N", help="MAX_LINKS_PER_PAGE")
    add("--max-url-length", type=int, metavar="N", help="URLLENGTH_LIMIT")
    add(
        "--priority-rules",
        default="",
        metavar="RULES",
        help="PRIORITY_RULES: comma-separated PATTERN=PRIORITY; higher is fetched first",
    )
    add("--sitemaps", action="store_true", help="read /sitemap.xml and its <priority>")
    add(
        "--max-pending-items",
        type=int,
        default=0,
        metavar="N",
        help="pause while N item files wait for ingestion (needs --dagster-home; 0 = off)",
    )
    add("--dagster-home", metavar="PATH", help="the instance whose ingestion the crawl feeds")
    add("--log-level", metavar="LEVEL", help="LOG_LEVEL (default INFO)")
    add("--stats-file", metavar="PATH", help="write the final crawl stats here as JSON")
    return parser


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject bad arguments before the reactor starts (errors there are harder to read)."""
    for url in args.start_url:
        if canonical_http_url(url) is None:
            parser.error(f"--start-url must be an absolute http(s) URL: {url!r}")
    for pattern in [*args.include, *args.exclude]:
        try:
            re.compile(pattern)
        except re.error as exc:
            parser.error(f"invalid regex {pattern!r}: {exc}")
    for name in ("max_pages", "depth_limit"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.max_pending_items < 0:
        parser.error("--max-pending-items must be >= 0")
    try:
        parse_rules(args.priority_rules)
    except PriorityRulesError as exc:
        parser.error(f"--priority-rules: {exc}")
    if args.concurrency is not None and args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    for name in ("max_download_bytes", "max_links_per_page", "max_url_length"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")


def build_settings(args: argparse.Namespace) -> Settings:
    """Project settings (crawler.settings) overridden by the command-line flags."""
    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    overrides: dict[str, Any] = {
        "CLOSESPIDER_PAGECOUNT": args.max_pages,
        "DEPTH_LIMIT": args.depth_limit,
    }
    if args.seen_keys_file:
        overrides["SEEN_KEYS_FILE"] = args.seen_keys_file
    if args.max_page_chars:
        overrides["MAX_PAGE_CHARS"] = args.max_page_chars
    if args.raw_dir:
        overrides["RAW_ITEMS_DIR"] = args.raw_dir
    if args.jobdir:
        overrides["JOBDIR"] = args.jobdir
    if args.autothrottle:
        overrides["AUTOTHROTTLE_ENABLED"] = True
    if args.concurrency:
        overrides["CONCURRENT_REQUESTS"] = args.concurrency
        overrides["CONCURRENT_REQUESTS_PER_DOMAIN"] = args.concurrency
    if args.log_level:
        overrides["LOG_LEVEL"] = args.log_level.upper()
    if args.allow_private_networks:
        overrides["ALLOW_PRIVATE_NETWORKS"] = True
    if args.max_download_bytes:
        overrides["MAX_DOWNLOAD_BYTES"] = args.max_download_bytes
        overrides["DOWNLOAD_MAXSIZE"] = 4 * args.max_download_bytes
        overrides["DOWNLOAD_WARNSIZE"] = max(1, args.max_download_bytes // 4)
    if args.max_links_per_page:
        overrides["MAX_LINKS_PER_PAGE"] = args.max_links_per_page
    if args.max_url_length:
        overrides["URLLENGTH_LIMIT"] = args.max_url_length
    overrides["PRIORITY_RULES"] = args.priority_rules
    overrides["SITEMAP_PRIORITIES"] = args.sitemaps
    overrides["MAX_PENDING_ITEMS"] = args.max_pending_items
    if args.dagster_home:
        overrides["BACKPRESSURE_DAGSTER_HOME"] = args.dagster_home
    if args.stats_file:
        overrides["LIVE_STATS_FILE"] = args.stats_file
    settings.setdict(overrides, priority="cmdline")
    return settings


def summarise(stats: dict[str, Any], elapsed: float) -> dict[str, Any]:
    """Crawler stats plus the summary keys the Dagster asset reads."""
    pages = (
        stats.get("response_received_count", 0)
        - stats.get("robotstxt/response_count", 0)
        - stats.get("rag/sitemap_responses", 0)
    )
    return {
        **stats,
        "items_saved": stats.get("rag/items_saved", 0),
        "items_unchanged": stats.get("rag/items_unchanged", 0),
        "pages_crawled": pages,
        "gone_urls": list(stats.get(STAT_GONE) or []),
        "refused_internal_address": stats.get(STAT_REFUSED, 0),
        "refused_urls": list(stats.get(STAT_REFUSED_URLS) or []),
        "failed_urls": sorted(stats.get(STAT_FAILED) or []),
        "ok_hosts": sorted(stats.get(STAT_OK_HOSTS) or []),
        "start_failures": dict(stats.get(STAT_START_FAILURES) or {}),
        "finish_reason": stats.get("finish_reason"),
        "elapsed_seconds": round(stats.get("elapsed_time_seconds", elapsed), 3),
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str)
    return str(value)


def write_stats_file(path: Path, summary: dict[str, Any]) -> None:
    """Write ``summary`` as JSON via a temp file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(summary, default=_json_default, indent=2, sort_keys=True, ensure_ascii=False)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Run one crawl; return 0 if it finished (or hit --max-pages), 1 otherwise."""
    parser = build_parser()
    args = parser.parse_args(argv)
    validate(parser, args)
    settings = build_settings(args)
    # CrawlerProcess installs a root log handler on stderr, which the Dagster asset streams.
    process = CrawlerProcess(settings)
    # Start URLs may carry user:password@; no log line may show it.
    install_masking()
    crawler = process.create_crawler(SiteSpider)
    started = time.monotonic()
    process.crawl(
        crawler,
        start_urls=args.start_url,
        allowed_domains=args.allowed_domain or None,
        include=args.include,
        exclude=args.exclude,
    )
    process.start()
    summary = summarise(crawler.stats.get_stats(), time.monotonic() - started)
    if args.stats_file:
        write_stats_file(Path(args.stats_file), mask_value(summary))
    reason = summary["finish_reason"]
    ok = reason in SUCCESS_REASONS
    logger.log(
        logging.INFO if ok else logging.ERROR,
        "Crawl ended (%s): %d item(s) saved, %d page(s) crawled, %d gone URL(s)",
        reason,
        summary["items_saved"],
        summary["pages_crawled"],
        len(summary["gone_urls"]),
    )
    for url, why in summary["start_failures"].items():
        logger.error("Start URL failed: %s (%s)", url, why)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
