"""Deterministic identifiers: canonical URLs, item keys, content hashes, chunk ids."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit, urlunsplit

from w3lib.url import canonicalize_url

ITEM_KEY_LENGTH = 16
_DEFAULT_PORTS = {"http": 80, "https": 443}


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


def item_key(url: str) -> str:
    """Partition key of a page: a short stable hash of its canonical URL."""
    return sha256_hex(canonical_url(url))[:ITEM_KEY_LENGTH]


def content_hash(text: str) -> str:
    """Hash of a document's extracted main text; decides whether downstream work is needed."""
    return sha256_hex(text)


def page_content_hash(html: str) -> str:
    """Content hash of a page: the hash of its extracted main text, not of the raw HTML
    (navigation, timestamps and tokens change on every fetch)."""
    from rag_core.extraction import extract_document

    return content_hash(extract_document(html).text)


def chunk_id(item_id: str, chunk_index: int, text: str) -> str:
    """Deterministic chunk id: unchanged text at the same place keeps its id (and its vector)."""
    return sha256_hex(f"{item_id}\x1f{chunk_index}\x1f{text}")[:24]
