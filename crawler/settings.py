"""Scrapy settings of the ragbot crawler; the CLI (``python -m crawler``) overrides some per run."""

from __future__ import annotations

BOT_NAME = "ragbot"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"

# Identify ourselves honestly so site operators can find us and write robots.txt rules.
USER_AGENT = "ragbot/0.1 (+RAG ingestion crawler; honours robots.txt)"
ROBOTSTXT_OBEY = True

RETRY_ENABLED = True
RETRY_TIMES = 2
RETRY_HTTP_CODES = [500, 502, 503, 504, 408, 429]

# Off here; `rag` turns it on for sites not on this machine (CRAWL_AUTOTHROTTLE=auto).
AUTOTHROTTLE_ENABLED = False
AUTOTHROTTLE_START_DELAY = 1.0
AUTOTHROTTLE_MAX_DELAY = 30.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 2.0

CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 8
DOWNLOAD_TIMEOUT = 30
DEPTH_LIMIT = 0  # 0 = unlimited

REDIRECT_ENABLED = True
REDIRECT_MAX_TIMES = 10

TELNETCONSOLE_ENABLED = False

# Bodies are cut at MAX_DOWNLOAD_BYTES (the first 8 MB of a page are kept and parsed,
# flagged truncated; DownloadCapMiddleware); a response announcing more than
# DOWNLOAD_MAXSIZE, or decompressing to more (HttpCompressionMiddleware), is not downloaded
# at all. The CLI sets all three from CRAWL_MAX_DOWNLOAD_BYTES (x1, x4, /4).
MAX_DOWNLOAD_BYTES = 8 * 1024 * 1024
DOWNLOAD_MAXSIZE = 4 * MAX_DOWNLOAD_BYTES
DOWNLOAD_WARNSIZE = MAX_DOWNLOAD_BYTES // 4

# Links taken from one page (to follow and to store) and the longest URL followed or stored.
MAX_LINKS_PER_PAGE = 2000
URLLENGTH_LIMIT = 2083

# Responses from private/loopback/link-local/reserved addresses are refused unless the
# start URL itself is on that address and port; True lifts the refusal (crawler/policy.py).
ALLOW_PRIVATE_NETWORKS = False

# 650: its process_response sees a 3xx before RedirectMiddleware (600) follows it; see
# crawler/middlewares.py for why Scrapy's own OffsiteMiddleware is not enough.
# 950: InternalAddressMiddleware sees every response first, before redirects are followed.
DOWNLOADER_MIDDLEWARES = {
    "crawler.middlewares.OffsiteRedirectMiddleware": 650,
    "crawler.middlewares.InternalAddressMiddleware": 950,
    "crawler.middlewares.DownloadCapMiddleware": 940,
}

ITEM_PIPELINES = {
    "crawler.pipelines.StreamingStoragePipeline": 300,
    "crawler.priority.PriorityRecorder": 310,  # after the file is written
}

# Priority (PRIORITY_RULES, sitemap <priority>), backpressure (MAX_PENDING_ITEMS) and live
# statistics for the metrics endpoint; each turns itself off when not configured.
SPIDER_MIDDLEWARES = {"crawler.priority.PriorityMiddleware": 560}
EXTENSIONS = {"crawler.backpressure.Backpressure": 500, "crawler.live_stats.LiveStats": 510}

RAW_ITEMS_DIR = "data/raw"
MAX_PAGE_CHARS = 2_000_000  # longer pages are truncated and flagged ``truncated``

LOG_LEVEL = "INFO"
FEED_EXPORT_ENCODING = "utf-8"

# Scrapy 2.19 no longer has REQUEST_FINGERPRINTER_IMPLEMENTATION: the only fingerprinter left is
# the modern one (REQUEST_FINGERPRINTER_CLASS default), so nothing to set here.
