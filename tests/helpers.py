"""Shared test helpers: item files, settings for a temporary data folder, small HTML pages."""

from __future__ import annotations

from pathlib import Path

from rag_core.ids import canonical_url, item_key
from rag_core.items import CrawledItem, write_item_atomically
from rag_core.settings import Settings, load_settings


def settings_for(data_dir: Path, **env: str) -> Settings:
    """Settings whose data (raw files, DuckDB, instance) live under ``data_dir``."""
    values = {"DATA_DIR": str(data_dir), "DUCKDB_PATH": str(data_dir / "rag.duckdb")}
    values.update(env)
    return load_settings(values, dotenv=data_dir / "no.env")


def page_html(title: str, body: str) -> str:
    """A page with the boilerplate real sites have around its main content."""
    return (
        f"<html><head><title>{title} | Test Docs</title></head><body>"
        "<header><nav><a href='/'>Home</a> <a href='/docs'>Docs</a></nav></header>"
        f"<main><h1>{title}</h1>{body}</main>"
        "<footer>Copyright 2026 Test Docs. All rights reserved.</footer></body></html>"
    )


def write_page(raw_dir: Path, url: str, title: str, body: str, **fields) -> str:
    """Write one item file as the crawler would; return its partition key."""
    key = item_key(url)
    item = CrawledItem(
        item_id=key,
        url=canonical_url(url),
        status=200,
        html=page_html(title, body),
        title=title,
        content_type="text/html",
        **fields,
    )
    write_item_atomically(item, raw_dir)
    return key


def paragraphs(topic: str, count: int) -> str:
    """``count`` paragraphs of plain prose about ``topic``."""
    return "".join(
        f"<p>Paragraph {i} explains how {topic} works in practice, which settings matter, "
        f"and what to check when {topic} does not behave as expected on a small machine.</p>"
        for i in range(count)
    )
