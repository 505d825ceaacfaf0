"""Generic same-site spider: follows links within allowed domains and yields one item per page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.exceptions import IgnoreRequest
from scrapy.http import HtmlResponse, Response, TextResponse
from scrapy.linkextractors import LinkExtractor
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.python.failure import Failure
from w3lib.http import basic_auth_header

from crawler.content import (
    canonical_http_url,
    host_regex,
    is_textual,
    looks_binary,
    mime_type,
    normalise_domain,
    normalise_space,
    wrongly_declared_wide,
)
from crawler.items import PageItem
from crawler.policy import UrlPolicy, origin, split_credentials
from rag_core.ids import canonical_url, item_key

GONE_STATUSES = (404, 410)
STAT_GONE = "rag/gone_urls"
# Evidence for pruning (rag_core.prune): a failed request or start URL makes the crawl
# incomplete, and 404s count only on hosts that also answered 2xx.
STAT_FAILED = "rag/failed_urls"
STAT_OK_HOSTS = "rag/ok_hosts"
STAT_START_FAILURES = "rag/start_failures"


def split_arg(value: str | Iterable[str] | None) -> list[str]:
    """Spider argument as a list: a comma-separated string is split, a list is taken as is."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else list(value)
    return [part.strip() for part in parts if part and part.strip()]


def utc_now_iso() -> str:
    """Current UTC time as ISO 8601 with a 'Z' suffix."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class SiteSpider(scrapy.Spider):
    """Crawl one or more sites from ``start_urls``, saving every HTML/text page as an item."""

    name = "site"
    # 404/410 reach the callback only so their URLs can be recorded as gone; never saved.
    handle_httpstatus_list = list(GONE_STATUSES)

    def __init__(
        self,
        start_urls: str | Iterable[str] | None = None,
        allowed_domains: str | Iterable[str] | None = None,
        include: str | Iterable[str] | None = None,
        exclude: str | Iterable[str] | None = None,
        *args: Any,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.start_urls = split_arg(start_urls)
        self._take_credentials()
        if not self.start_urls:
            raise ValueError("SiteSpider needs at least one start URL (-a start_urls=...)")
        for url in self.start_urls:
            if canonical_http_url(url) is None:
                raise ValueError(f"start URL is not an absolute http(s) URL: {url!r}")
        domains = split_arg(allowed_domains) or [
            urlsplit(u).hostname or "" for u in self.start_urls
        ]
        # Host names only: Scrapy's OffsiteMiddleware matches host names, so a port never matches.
        self.allowed_domains = sorted({d for d in map(normalise_domain, domains) if d})
        self.include = [re.compile(p) for p in split_arg(include)]
        self.exclude = [re.compile(p) for p in split_arg(exclude)]
        self._host_re = host_regex(self.allowed_domains)
        # The origins of the start URLs, or ALLOWED_DOMAINS when given (crawler/policy.py).
        self.url_policy = UrlPolicy(self.start_urls, split_arg(allowed_domains))
        self.max_links = 2000
        # LinkExtractor's own allow_domains compares host:port, so domains are checked here instead.
        self.link_extractor = LinkExtractor(allow=self.include, deny=self.exclude, unique=True)
        self.items_yielded = 0

    def _take_credentials(self) -> None:
        # user:password@ in a start URL: sent as basic auth to that URL's origin only (Scrapy
        # cannot fetch a URL with user info, and its HttpAuthMiddleware matches a domain
        # without the port), never kept in a URL or logged.
        self._auth: dict[tuple[str, str, int], bytes] = {}
        for index, url in enumerate(self.start_urls):
            bare, user, password = split_credentials(url)
            if bare != url:
                self.start_urls[index] = bare
                self._auth.setdefault(origin(bare), basic_auth_header(user, password))

    def _auth_headers(self, url: str) -> dict[bytes, bytes]:
        header = self._auth.get(origin(url)) if self._auth else None
        return {b"Authorization": header} if header else {}

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> SiteSpider:
        """Standard factory; takes the link and URL-length caps from the crawler's settings."""
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.url_policy.max_url_length = crawler.settings.getint("URLLENGTH_LIMIT", 2083)
        spider.max_links = crawler.settings.getint("MAX_LINKS_PER_PAGE", 2000)
        return spider

    async def start(self) -> AsyncIterator[Any]:
        """One request per start URL, subject to the dupe filter (unlike Scrapy's default)."""
        # Scrapy's default start requests use dont_filter=True: a page linking back to the
        # start URL then gets it fetched twice, and with JOBDIR a resumed crawl refetches it.
        for url in self.start_urls:
            yield scrapy.Request(
                url,
                callback=self.parse,
                errback=self.on_error,
                headers=self._auth_headers(url),
                meta={"rag_start": url},
            )

    # -- callbacks ---------------------------------------------------------------------------

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        """Save the page if it is a 2xx HTML/text page and follow its in-domain links."""
        stats = self.crawler.stats
        if response.status in GONE_STATUSES:
            self._record_gone(response)
            self._record_start_failure(response.meta, f"HTTP {response.status}")
            return
        if not 200 <= response.status < 300:
            stats.inc_value("rag/skipped_non_2xx")
            self._record_start_failure(response.meta, f"HTTP {response.status}")
            return
        self._add_to_list(STAT_OK_HOSTS, urlsplit(response.url).netloc.lower())
        content_type = (response.headers.get(b"Content-Type") or b"").decode("latin-1").strip()
        # No Content-Type header: trust Scrapy's sniffing of the body into an HtmlResponse.
        fallback = "text/html" if isinstance(response, HtmlResponse) else ""
        mime = mime_type(content_type) or fallback
        if not is_textual(mime):
            stats.inc_value("rag/skipped_non_html")
            return
        if looks_binary(response.body):
            stats.inc_value("rag/skipped_binary")
            self.logger.info("Skipped binary body served as %s: %s", mime, response.url)
            return
        if isinstance(response, TextResponse) and wrongly_declared_wide(
            response.encoding, response.body
        ):
            stats.inc_value("rag/wrong_charset_ignored")
            self.logger.info(
                "Decoding %s as UTF-8, not as declared %s", response.url, response.encoding
            )
            response = response.replace(encoding="utf-8")
        if self._page_limit_reached():
            self._requeue(response)
            return
        # Parse only what can be kept: no character of MAX_PAGE_CHARS takes more than 4 bytes.
        keep = self.crawler.settings.getint("MAX_PAGE_CHARS", 2_000_000) * 4
        if len(response.body) > keep:
            stats.inc_value("rag/bodies_cut_before_parsing")
            response = response.replace(body=response.body[:keep])
        is_html = mime != "text/plain" and isinstance(response, TextResponse)
        url = canonical_url(response.url)
        redirects = response.meta.get("redirect_urls") or []
        self.items_yielded += 1
        yield PageItem(
            item_id=item_key(url),
            url=url,
            requested_url=canonical_url(redirects[0] if redirects else response.request.url),
            status=response.status,
            content_type=content_type,
            encoding=getattr(response, "encoding", "") or "",
            title=self._title(response) if is_html else "",
            html=self._decode(response),
            links=self._page_links(response, url) if is_html else [],
            fetched_at=utc_now_iso(),
            depth=int(response.meta.get("depth", 0)),
            truncated="rag_cut" in response.flags,  # cut at CRAWL_MAX_DOWNLOAD_BYTES
        )
        if is_html:
            yield from self._follow(response)

    def on_error(self, failure: Failure) -> None:
        """Count failed requests by kind and remember their URLs; the crawl goes on."""
        stats = self.crawler.stats
        request = getattr(failure, "request", None)
        meta = request.meta if request is not None else {}
        if failure.check(HttpError):
            status = failure.value.response.status
            stats.inc_value("rag/http_errors")
            stats.inc_value(f"rag/http_errors/{status}")
            why = f"HTTP {status}"
        elif failure.check(IgnoreRequest):
            # Offsite or disallowed by robots.txt: a rule, not a failure of the site.
            stats.inc_value("rag/requests_ignored")
            return
        else:
            stats.inc_value("rag/download_errors")
            why = failure.getErrorMessage() or failure.type.__name__
            self.logger.warning("Request failed: %s", why)
        if request is not None:
            self._add_to_list(STAT_FAILED, canonical_url(request.url))
        self._record_start_failure(meta, why)

    # -- helpers ----------------------------------------------------------------------------

    def _add_to_list(self, stat: str, value: str) -> None:
        # A set, kept in the stats in place (written out sorted): O(1) per page.
        values = self.crawler.stats.get_value(stat)
        if values is None:
            values = set()
            self.crawler.stats.set_value(stat, values)
        values.add(value)

    def _record_start_failure(self, meta: dict, why: str) -> None:
        start = meta.get("rag_start")
        if start:
            failures = dict(self.crawler.stats.get_value(STAT_START_FAILURES) or {})
            failures[start] = why
            self.crawler.stats.set_value(STAT_START_FAILURES, failures)

    def _record_gone(self, response: Response) -> None:
        gone = list(self.crawler.stats.get_value(STAT_GONE) or [])
        # The final URL and, after redirects, the URL first requested are both gone pages.
        candidates = [response.url, *(response.meta.get("redirect_urls") or [])[:1]]
        for url in candidates:
            canon = canonical_url(url)
            if canon not in gone:
                gone.append(canon)
        self.crawler.stats.set_value(STAT_GONE, gone)

    def _page_limit_reached(self) -> bool:
        # CLOSESPIDER_PAGECOUNT stops scheduling, but responses already in flight still arrive;
        # this keeps the number of saved pages at or below the limit.
        limit = self.crawler.settings.getint("CLOSESPIDER_PAGECOUNT")
        return limit > 0 and self.items_yielded >= limit

    def _requeue(self, response: Response) -> None:
        # Over the limit: the page is not saved, but its request was already marked seen, so
        # put it back in the scheduler (persisted with JOBDIR) for a resumed crawl to fetch.
        # The engine is closing by now and downloads nothing more; the flag prevents a loop.
        self.crawler.stats.inc_value("rag/skipped_page_limit")
        if response.request is None or response.request.meta.get("rag_requeued"):
            return
        request = response.request.replace(dont_filter=True)
        request.meta["rag_requeued"] = True
        self.crawler.engine.crawl(request)

    @staticmethod
    def _decode(response: Response) -> str:
        if isinstance(response, TextResponse):
            try:
                return response.text
            except (UnicodeDecodeError, LookupError):
                encoding = response.encoding or "utf-8"
        else:
            encoding = "utf-8"
        try:
            return response.body.decode(encoding, errors="replace")
        except LookupError:  # unknown codec name declared by the server
            return response.body.decode("utf-8", errors="replace")

    @staticmethod
    def _title(response: TextResponse) -> str:
        title = normalise_space(response.xpath("string((//title)[1])").get() or "")
        return title or normalise_space(response.xpath("string((//h1)[1])").get() or "")

    def _page_links(self, response: TextResponse, page_url: str) -> list[str]:
        links: dict[str, None] = {}  # ordered set: page order, first occurrence wins
        max_length = self.url_policy.max_url_length
        for href in response.xpath("//a/@href"):
            href = href.get().strip()
            if not href or len(href) > max_length:
                continue
            absolute = canonical_http_url(response.urljoin(href))
            # A fragment-only or self link is in-page navigation, not an outgoing link.
            if absolute and absolute != page_url and len(absolute) <= max_length:
                links.setdefault(absolute, None)
                if len(links) >= self.max_links:
                    self.crawler.stats.inc_value("rag/pages_with_links_capped")
                    break
        return list(links)

    def _follow(self, response: TextResponse) -> Iterator[scrapy.Request]:
        followed = 0
        for link in self.link_extractor.extract_links(response):
            if not self.url_policy.allows(link.url):
                continue
            if followed >= self.max_links:  # MAX_LINKS_PER_PAGE: the rest are not followed
                self.crawler.stats.inc_value("rag/links_not_followed_cap")
                break
            followed += 1
            yield response.follow(
                link.url,
                callback=self.parse,
                errback=self.on_error,
                headers=self._auth_headers(link.url),
            )
