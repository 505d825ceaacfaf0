"""Downloader middlewares: redirects stay inside the crawl and never loop; internal addresses
are refused (crawler/policy.py says what is refused and why)."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

from scrapy import signals
from scrapy.exceptions import IgnoreRequest, StopDownload
from w3lib.url import safe_url_string

from crawler.content import canonical_http_url, host_regex
from crawler.policy import AddressGuard
from rag_core.redact import mask_secrets

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.http import Request, Response

logger = logging.getLogger(__name__)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
STAT_DROPPED = "rag/offsite_redirects_dropped"
STAT_LOOPS = "rag/redirect_loops"


class OffsiteRedirectMiddleware:
    """Drop redirects whose target host is outside ``spider.allowed_domains``.

    Scrapy 2.19's OffsiteMiddleware filters a redirect only when the redirected request is
    scheduled, and skips requests with ``dont_filter=True``; RedirectMiddleware copies
    ``dont_filter`` from the original request, and Scrapy's default start requests have it set,
    so there a start URL redirecting off-site is followed. SiteSpider's start requests do not
    set it, but this middleware closes the gap for any request, counts every drop in
    ``rag/offsite_redirects_dropped``, and stops the 3xx before RedirectMiddleware (600) acts:
    at 650 its ``process_response`` runs first. Its ``process_request`` catches any other
    redirect (e.g. meta refresh) that carries ``redirect_urls``. A 3xx back to a URL already in
    its own redirect chain (A -> B -> A) is dropped too and counted in ``rag/redirect_loops``.
    """

    def __init__(self, crawler: Crawler):
        self.crawler = crawler
        self._domains: tuple[str, ...] | None = None
        self._regex: re.Pattern[str] = re.compile("")

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> OffsiteRedirectMiddleware:
        """Standard Scrapy factory."""
        return cls(crawler)

    def host_allowed(self, url: str) -> bool:
        """True if ``url`` is inside the crawl: the spider's UrlPolicy when it has one (origins
        of the start URLs, or ALLOWED_DOMAINS), else its allowed domains' host names."""
        policy = getattr(self.crawler.spider, "url_policy", None)
        if policy is not None:
            return policy.allows(url)
        domains = tuple(getattr(self.crawler.spider, "allowed_domains", None) or ())
        if domains != self._domains:
            self._domains, self._regex = domains, host_regex(domains)
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            return False
        return bool(self._regex.search(host))

    def process_request(self, request: Request) -> None:
        """Drop a redirected request (it carries ``redirect_urls``) that points off-site."""
        if request.meta.get("redirect_urls") and not self.host_allowed(request.url):
            self._drop(request.meta["redirect_urls"][-1], request.url)

    def process_response(self, request: Request, response: Response) -> Response:
        """Drop a 3xx response whose Location points off-site, before it is followed."""
        location = response.headers.get(b"Location")
        if (
            response.status in REDIRECT_STATUSES
            and location
            and not request.meta.get("dont_redirect")
        ):
            target = urljoin(request.url, safe_url_string(location))
            if not self.host_allowed(target):
                self._drop(request.url, target)
            # A -> B -> A: without this the dupe filter drops the second A silently (counted
            # only with every other duplicate link), and a dont_filter request bounces
            # REDIRECT_MAX_TIMES times.
            chain = [*request.meta.get("redirect_urls", []), request.url]
            canon = canonical_http_url(target)
            if canon is not None and canon in {canonical_http_url(url) for url in chain}:
                self.crawler.stats.inc_value(STAT_LOOPS)
                logger.info("Dropped redirect loop %s -> %s", " -> ".join(chain), target)
                raise IgnoreRequest(f"Redirect loop back to {target}")
        return response

    def _drop(self, source: str, target: str) -> None:
        self.crawler.stats.inc_value(STAT_DROPPED)
        logger.info("Dropped off-site redirect %s -> %s", source, target)
        raise IgnoreRequest(f"Off-site redirect to {target}")


STAT_REFUSED = "rag/refused_internal_address"
STAT_REFUSED_URLS = "rag/refused_urls"
MAX_REFUSED_LISTED = 200


class InternalAddressMiddleware:
    """Refuse every response whose connected address is internal (see crawler/policy.py).

    At 950 its ``process_response`` runs before every stock middleware's (redirects, retries,
    decompression): a 3xx from an internal address is refused, not followed. The request
    has reached the server by then, but nothing it answered is kept, parsed or followed.
    Refusals are counted in ``rag/refused_internal_address`` and listed (up to 200) in
    ``rag/refused_urls`` of the crawl's stats, which ``rag status --errors`` shows.
    """

    def __init__(self, crawler: Crawler):
        self.crawler = crawler
        self.guard: AddressGuard | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> InternalAddressMiddleware:
        """Standard Scrapy factory."""
        return cls(crawler)

    def _guard(self) -> AddressGuard:
        if self.guard is None:
            spider = self.crawler.spider
            self.guard = AddressGuard(
                getattr(spider, "start_urls", []) or [],
                self.crawler.settings.getbool("ALLOW_PRIVATE_NETWORKS"),
            )
        return self.guard

    def process_response(self, request: Request, response: Response) -> Response:
        """Pass the response on, or refuse it when it came from an internal address."""
        address = getattr(response, "ip_address", None)
        if not self._guard().refuses(address, response.url):
            return response
        stats = self.crawler.stats
        stats.inc_value(STAT_REFUSED)
        listed = list(stats.get_value(STAT_REFUSED_URLS) or [])
        if len(listed) < MAX_REFUSED_LISTED:
            listed.append(f"{mask_secrets(response.url)} (connected to {address})")
            stats.set_value(STAT_REFUSED_URLS, listed)
        logger.warning(
            "Refused %s: it was served from the internal address %s "
            "(set ALLOW_PRIVATE_NETWORKS=true to allow)",
            response.url,
            address,
        )
        raise IgnoreRequest(f"internal address {address}")


STAT_CUT = "rag/downloads_cut"


class DownloadCapMiddleware:
    """Stop downloading a body at ``MAX_DOWNLOAD_BYTES`` and keep what arrived, flagged.

    Scrapy's DOWNLOAD_MAXSIZE drops a large response altogether; a long documentation page
    is still worth its first megabytes. So the body is cut here (``StopDownload`` from the
    ``bytes_received`` signal keeps the partial response), and DOWNLOAD_MAXSIZE, set higher
    by the CLI, remains the hard limit for announced and decompressed sizes (a response
    announcing more than that, or a compression bomb, is not downloaded at all). Only the
    cut body is ever decoded and parsed; the spider flags its item ``truncated``.
    """

    def __init__(self, crawler: Crawler):
        self.crawler = crawler
        self.limit = crawler.settings.getint("MAX_DOWNLOAD_BYTES", 8 * 1024 * 1024)
        crawler.signals.connect(self.bytes_received, signal=signals.bytes_received)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DownloadCapMiddleware:
        """Standard Scrapy factory."""
        return cls(crawler)

    def bytes_received(self, data: bytes, request: Request, spider: object) -> None:
        received = request.meta.get("rag_bytes_received", 0) + len(data)
        request.meta["rag_bytes_received"] = received
        if received > self.limit:
            raise StopDownload(fail=False)

    def process_response(self, request: Request, response: Response) -> Response:
        """Trim a cut body to the limit exactly and mark it."""
        if request.meta.get("rag_bytes_received", 0) > self.limit:
            self.crawler.stats.inc_value(STAT_CUT)
            logger.warning(
                "Cut %s at %d bytes (CRAWL_MAX_DOWNLOAD_BYTES)", response.url, self.limit
            )
            response = response.replace(
                body=response.body[: self.limit], flags=[*response.flags, "rag_cut"]
            )
        return response
