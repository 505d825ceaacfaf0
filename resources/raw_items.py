"""Resource for the folder of item files the crawler writes (``data/raw``)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from rag_core.items import CrawledItem, item_file_name, read_item_file, scan_item_files


class RawItemStore(dg.ConfigurableResource):
    """The crawler's output folder: one ``item_<key>.json`` per page."""

    raw_dir: str

    @property
    def folder(self) -> Path:
        return Path(self.raw_dir)

    def path_for(self, key: str) -> Path:
        """Where the item of partition ``key`` lives."""
        return self.folder / item_file_name(key)

    def read(self, key: str) -> CrawledItem:
        """Load and validate the item of ``key`` (raises ItemFileError)."""
        return read_item_file(self.path_for(key))

    def scan(self) -> list[tuple[str, int]]:
        """(key, mtime_ns) of every item file, oldest first: one directory listing, no reads."""
        return scan_item_files(self.folder)
