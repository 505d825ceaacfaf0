"""Where the crawl may go: the start URLs' origins, and never an internal address.

Two independent rules, both needed:

* **URL rule** (``UrlPolicy``): by default a URL is followed only if its scheme, host and
  port are those of a start URL (an ``http://`` start URL on port 80 also admits its
  ``https://`` form on 443, the usual upgrade redirect). ``ALLOWED_DOMAINS`` widens this on
  purpose: a listed domain admits itself and every subdomain (``example.com`` admits
  ``docs.example.com``), on any port, over http and https.
* **Address rule** (``AddressGuard``): a response whose *connected* IP address is private,
  loopback, link-local, multicast, reserved or otherwise not globally routable is refused,
  whatever the name that led there. The address checked is the one the download actually
  connected to, so a name that resolves to a public address at one moment and to
  127.0.0.1 the next (DNS rebinding) is caught too. Exempt: the address and port of a start
  URL that is itself on such an address (the demo site, an intranet docs server), or
  everything with ``ALLOW_PRIVATE_NETWORKS=true``.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from crawler.content import host_regex, normalise_domain

DEFAULT_PORTS = {"http": 80, "https": 443}


def split_credentials(url: str) -> tuple[str, str, str]:
    """``url`` without its ``user:password@`` part, and that user and password (unquoted).

    Scrapy cannot fetch a URL with user info ("invalid hostname"); the spider sends the
    credentials as HTTP basic auth instead, and no log line shows them.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, "", ""
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return parts._replace(netloc=hostport).geturl(), unquote(user), unquote(password)


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an http(s) URL, or None."""
    try:
        parts = urlsplit(url.strip())
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not host or port is None:
        return None
    return scheme, host, port


class UrlPolicy:
    """Decides whether a URL is inside the crawl (see the module docstring)."""

    def __init__(
        self,
        start_urls: Iterable[str],
        allowed_domains: Iterable[str] = (),
        max_url_length: int = 2083,
    ):
        self.origins: set[tuple[str, str, int]] = set()
        for url in start_urls:
            found = origin(url)
            if found is None:
                continue
            self.origins.add(found)
            if found[0] == "http" and found[2] == 80:
                self.origins.add(("https", found[1], 443))
        domains = [d for d in map(normalise_domain, allowed_domains) if d]
        self.domain_re: re.Pattern[str] | None = host_regex(domains) if domains else None
        self.max_url_length = max_url_length

    def allows(self, url: str) -> bool:
        """True if ``url`` may be crawled."""
        if len(url) > self.max_url_length:
            return False
        found = origin(url)
        if found is None:
            return False
        if self.domain_re is not None:
            return bool(self.domain_re.search(found[1]))
        return found in self.origins


def is_internal(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address that is not publicly routable (private, loopback, link-local,
    multicast, reserved, shared, unspecified), including IPv4-mapped IPv6 forms of those."""
    ip = ipaddress.ip_address(str(address).strip("[]"))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def resolve(host: str, port: int) -> set[str]:
    """Every IP address ``host`` resolves to now (empty if it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return set()
    return {str(ipaddress.ip_address(info[4][0].split("%")[0])) for info in infos}


class AddressGuard:
    """Refuses responses from internal addresses, except the start URLs' own."""

    def __init__(self, start_urls: Iterable[str], allow_private_networks: bool = False):
        self.allow_all = allow_private_networks
        # (address, port) of each start URL that is itself internal: that server, and only
        # that port of it, is what the user asked to crawl.
        self.exempt: set[tuple[str, int]] = set()
        for url in start_urls:
            found = origin(url)
            if found is None:
                continue
            for address in resolve(found[1], found[2]):
                if is_internal(address):
                    self.exempt.add((address, found[2]))

    def refuses(self, address: object, url: str) -> bool:
        """True if a response connected to ``address`` for ``url`` must be refused."""
        if self.allow_all or address is None:
            return False
        text = str(address).strip("[]")
        try:
            internal = is_internal(text)
        except ValueError:
            return True  # not an IP address: cannot be vouched for
        if not internal:
            return False
        found = origin(url)
        port = found[2] if found else 0
        canonical = str(ipaddress.ip_address(text))
        return (canonical, port) not in self.exempt
