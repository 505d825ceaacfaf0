"""Pure helpers on fetched pages: content-type checks, binary sniffing, URL and host rules."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from rag_core.ids import canonical_url

TEXTUAL_MIME_TYPES = frozenset({"text/html", "application/xhtml+xml", "text/plain"})
SNIFF_BYTES = 4096
# Share of control bytes in the sniffed prefix above which a "text" body is treated as binary.
MAX_CONTROL_SHARE = 0.10
# Control bytes that legitimately occur in text: \b \t \n \f \r and ESC (ISO-2022 encodings).
_TEXT_CONTROLS = frozenset(b"\x08\t\n\x0c\r\x1b")
_CONTROL_BYTES = (frozenset(range(32)) - _TEXT_CONTROLS) | {0x7F}
# UTF-16/32 text legitimately contains NUL bytes; a BOM tells us it is such text.
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff")
_WS_RE = re.compile(r"\s+")


def mime_type(content_type: bytes | str | None) -> str:
    """Lower-case media type of a Content-Type header value, without parameters ('' if absent)."""
    if content_type is None:
        return ""
    if isinstance(content_type, bytes):
        content_type = content_type.decode("latin-1")
    return content_type.split(";", 1)[0].strip().lower()


def is_textual(mime: str) -> bool:
    """True for the media types the crawler keeps: HTML, XHTML and plain text."""
    return mime in TEXTUAL_MIME_TYPES


def looks_binary(body: bytes) -> bool:
    """True when the first 4 KB look like binary data (NUL bytes or many control bytes)."""
    head = body[:SNIFF_BYTES]
    if not head:
        return False
    if head.startswith(_WIDE_BOMS):
        return False
    if b"\x00" in head:
        return True
    controls = sum(1 for byte in head if byte in _CONTROL_BYTES)
    return controls / len(head) > MAX_CONTROL_SHARE


def wrongly_declared_wide(encoding: str | None, body: bytes) -> bool:
    """True when a UTF-16/32 charset is declared for a body that cannot be in it.

    Such a body has no BOM and no NUL byte in its first 4 KB (a NUL without a BOM is sniffed
    as binary before this is asked), while ASCII markup in UTF-16/32 is full of NULs. Browsers
    decode it as UTF-8 (WHATWG: a meta-declared UTF-16 means UTF-8); decoding it as declared
    turns the whole page, ASCII included, into CJK-looking garbage.
    """
    try:
        name = codecs.lookup(encoding or "").name
    except LookupError:
        return False
    if not name.startswith(("utf-16", "utf-32")):
        return False
    head = body[:SNIFF_BYTES]
    return not head.startswith(_WIDE_BOMS) and b"\x00" not in head


def normalise_space(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return _WS_RE.sub(" ", text).strip()


def canonical_http_url(url: str) -> str | None:
    """Canonical form of an absolute http(s) URL, or None for other schemes and junk."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:  # e.g. an invalid IPv6 literal in a scraped href
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        return None
    try:
        return canonical_url(url)
    except ValueError:
        return None


def host_regex(domains: Iterable[str]) -> re.Pattern[str]:
    """Regex matching a host name that is one of ``domains`` or a subdomain (Scrapy's rule)."""
    escaped = [re.escape(d.lower()) for d in domains if d]
    if not escaped:
        return re.compile("")  # no restriction, as Scrapy does for empty allowed_domains
    return re.compile(rf"^(.*\.)?({'|'.join(escaped)})$")


def normalise_domain(value: str) -> str:
    """Host name of an allowed-domain argument: scheme, port, path and case dropped."""
    value = value.strip()
    if "://" not in value:
        value = "//" + value
    try:
        return (urlsplit(value).hostname or "").lower()
    except ValueError:
        return ""
