"""Deterministic identifiers: canonical URLs, item keys, content hashes, chunk ids."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import unquote, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

# Hex digits of the hash suffix. It only has to tell apart URLs whose readable part is the
# same (case variants, long URLs cut short, queries): 32 bits keep even a group of 1,000
# such URLs below a one-in-8,000 chance of a clash.
KEY_HASH_LENGTH = 8
# Longest readable part, in characters and in UTF-8 bytes (the item file name, with '/'
# escaped, must stay below 255 bytes). The UI's partition list cuts a key past ~35 characters
# in the middle, so the page's own name and the hash stay visible; the partition's page
# shows the whole key. Long paths keep their end (see _cut).
KEY_SLUG_CHARS = 64
KEY_SLUG_BYTES = 150
LEGACY_KEY_RE = re.compile(r"^[0-9a-f]{16}$")
# Any character outside these becomes '-'. Dagster refuses "...", control characters, and its
# UI also ',', '[', ']' and ' ' in partition keys; '*' and '%' are kept out for globs and
# file names. Letters and digits of any script stay (a Japanese path stays readable).
_SLUG_DROP = re.compile(r"[^\w.:~/-]|_", re.UNICODE)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PAGE_SUFFIXES = (".html", ".htm", ".php", ".aspx", ".asp", ".jsp")


def canonical_url(url: str) -> str:
    """Return the canonical form of ``url``: one page, one string.

    Lower-case scheme and host, no default port, no fragment, sorted query
    (w3lib's canonicalisation, as Scrapy's request fingerprint uses), and an
    empty path written as ``/``.
    """
    canon = canonicalize_url(url.strip(), keep_fragments=False)
    parts = urlsplit(canon)
    host = (parts.hostname or "").lower()
    if parts.port and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme.lower(), host, parts.path or "/", parts.query, ""))


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _slug_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = _SLUG_DROP.sub("-", text)
    text = re.sub(r"\.{2,}", ".", text)  # "..." is Dagster's range separator
    return re.sub(r"-{2,}", "-", text)


def _readable_host(netloc: str) -> str:
    host, _, port = netloc.partition(":")
    try:  # an internationalised domain reads better in its own script than as xn--...
        host = host.encode("ascii").decode("idna") if "xn--" in host else host
    except UnicodeError:
        pass
    return host + (f":{port}" if port else "")


def _cut(slug: str) -> str:
    """Shorten ``slug`` to the limits, keeping the host and the end of the path (the page's
    own name says more than the folders above it)."""
    if len(slug) <= KEY_SLUG_CHARS and len(slug.encode()) <= KEY_SLUG_BYTES:
        return slug
    host, _, rest = slug.partition("/")
    while rest and (
        len(host) + 2 + len(rest) > KEY_SLUG_CHARS
        or len(host.encode()) + 2 + len(rest.encode()) > KEY_SLUG_BYTES
    ):
        rest = rest[1:]
    if "/" in rest[:-1]:  # start at a whole folder or page name rather than mid-word
        rest = rest[rest.index("/") + 1 :]
    host = host[:KEY_SLUG_CHARS]
    return f"{host}/~{rest.lstrip('/-.')}" if rest else host


def url_slug(url: str) -> str:
    """The readable part of a key: host (with a non-default port), path and query, slugged."""
    parts = urlsplit(canonical_url(url))
    path = unquote(parts.path)
    for suffix in _PAGE_SUFFIXES:
        if path.lower().endswith(suffix):
            path = path[: -len(suffix)]
            break
    segments = [_slug_text(s).strip("-.") for s in path.split("/")]
    if segments and segments[-1] in ("index", "default"):
        segments.pop()  # /docs/index.html is the /docs/ page: its name adds only length
    slug = "/".join([_slug_text(_readable_host(parts.netloc)), *filter(None, segments)])
    if parts.query:
        query = _slug_text(unquote(parts.query.replace("+", " "))).strip("-./")
        slug = f"{slug}-{query}" if query else slug
    return _cut(slug.strip("-./") or "page")


def item_key(url: str) -> str:
    """Partition key of a page: readable and stable, ``<host[:port]/path>-<hash>``.

    E.g. ``docs.example.com/install/windows-2a1b4024``. The slug is for people (lower case,
    at most 64 characters); the suffix, the first hex digits of SHA-256 of the canonical URL,
    keeps pages apart that slug alike (``/Path`` and ``/path``, ``?q=A`` and ``?q=a``). A
    re-crawl of the same URL always gives the same key.
    """
    return f"{url_slug(url)}-{sha256_hex(canonical_url(url))[:KEY_HASH_LENGTH]}"


def legacy_item_key(url: str) -> str:
    """The key of the first scheme: 16 hex digits of SHA-256 of the canonical URL."""
    return sha256_hex(canonical_url(url))[:16]


def is_legacy_key(key: str) -> bool:
    """Whether ``key`` is of the first scheme (data folders written before readable keys)."""
    return bool(LEGACY_KEY_RE.match(key))


def content_hash(text: str) -> str:
    """Hash of a document's extracted main text; decides whether downstream work is needed."""
    return sha256_hex(text)


def chunk_id(item_id: str, chunk_index: int, text: str) -> str:
    """Deterministic chunk id: unchanged text at the same place keeps its id (and its vector)."""
    return sha256_hex(f"{item_id}\x1f{chunk_index}\x1f{text}")[:24]
