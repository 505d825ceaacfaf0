"""Resource for the folder of item files the crawler writes (``data/raw``)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from rag_core.items import CrawledItem, item_file_name, key_from_file_name, read_item_file


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
        found: list[tuple[str, int]] = []
        try:
            entries = os.scandir(self.folder)
        except FileNotFoundError:
            return found
        with entries:
            for entry in entries:
                key = key_from_file_name(entry.name)
                if key is None:
                    continue
                try:
                    found.append((key, entry.stat().st_mtime_ns))
                except FileNotFoundError:  # replaced between listing and stat
                    continue
        found.sort(key=lambda pair: (pair[1], pair[0]))
        return found
