"""The item the spider yields: one fetched page, field for field a ``CrawledItem``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rag_core.items import SCHEMA_VERSION, CrawledItem


@dataclass
class PageItem:
    """One fetched HTML/text page as yielded by the spider (mutable so pipelines may adjust it)."""

    item_id: str
    url: str
    status: int
    html: str
    requested_url: str = ""
    title: str = ""
    content_type: str = ""
    encoding: str = ""
    links: list[str] = field(default_factory=list)
    fetched_at: str = ""
    depth: int = 0
    truncated: bool = False
    content_hash: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_crawled_item(self) -> CrawledItem:
        """Freeze into the storage record that ``write_item_atomically`` persists."""
        return CrawledItem(**asdict(self))
