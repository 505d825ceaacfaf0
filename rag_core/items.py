"""The item file: one crawled page as ``data/raw/item_<key>.json``, written atomically.

A key holds '/' (``docs.example.com/install/windows-2a1b4024``), which a file name cannot:
it is written as ``%2F`` (``item_docs.example.com%2Finstall%2Fwindows-2a1b4024.json``). Keys
never contain '%', so the name maps back to exactly one key.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from pathlib import Path

SCHEMA_VERSION = 1
ITEM_FILE_PREFIX = "item_"
ITEM_FILE_SUFFIX = ".json"
# Readable keys end in "-<8 hex>"; keys of the first scheme (16 hex digits) are still listed,
# so an old data folder is seen (and re-keyed by rag_core.rekey), never silently ignored.
_ITEM_FILE_RE = re.compile(r"^item_(.+-[0-9a-f]{8}|[0-9a-f]{16})\.json$")
REQUIRED_FIELDS = ("item_id", "url", "status", "html")


FIELD_TYPES: dict[str, type] = {
    "item_id": str, "url": str, "status": int, "html": str, "requested_url": str, "title": str,
    "content_type": str, "encoding": str, "links": list, "fetched_at": str, "depth": int,
    "truncated": bool, "content_hash": str, "schema_version": int,
}  # fmt: skip
_TYPE_NAMES = {str: "a string", int: "an integer", list: "a list", bool: "true or false"}


class ItemFileError(ValueError):
    """An item file that cannot be used: unreadable, not JSON, or missing fields."""


@dataclass(frozen=True)
class CrawledItem:
    """One fetched page as the crawler saved it."""

    item_id: str
    url: str  # final URL after redirects (canonical form)
    status: int
    html: str
    requested_url: str = ""
    title: str = ""
    content_type: str = ""
    encoding: str = ""
    links: list[str] = field(default_factory=list)
    fetched_at: str = ""  # ISO 8601, UTC
    depth: int = 0
    truncated: bool = False  # True when the HTML was capped at MAX_PAGE_CHARS
    # Hash of the extracted main text, set by the crawler when it compared a re-fetch with the
    # stored file (empty on a first fetch: the documents asset computes it the same way).
    content_hash: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        """The file's content: sorted keys, so the same page always gives the same bytes."""
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


def item_file_name(key: str) -> str:
    """``item_<key>.json`` with the key's '/' written as ``%2F``."""
    if "%" in key or "\0" in key:
        raise ValueError(f"not an item key: {key!r}")
    return f"{ITEM_FILE_PREFIX}{key.replace('/', '%2F')}{ITEM_FILE_SUFFIX}"


def key_from_file_name(name: str) -> str | None:
    """Partition key of an item file name, or None for anything else (temp files included)."""
    match = _ITEM_FILE_RE.match(name)
    if not match:
        return None
    escaped = match.group(1)
    key = escaped.replace("%2F", "/")
    # Only names this module writes: any other '%' would make two names map to one key.
    return key if "%" not in key else None


def scan_item_files(folder: Path) -> list[tuple[str, int]]:
    """(key, mtime_ns) of every item file in ``folder``, oldest first: one listing, no reads.

    Temp files of writes in progress do not match the item pattern and are skipped.
    """
    found: list[tuple[str, int]] = []
    try:
        entries = os.scandir(folder)
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
    found.sort(key=itemgetter(1, 0))  # by mtime, then key (a C key function: 100k files)
    return found


def write_item_atomically(item: CrawledItem, raw_dir: Path) -> Path:
    """Write ``item`` to ``raw_dir/item_<key>.json`` via a temp file and a rename.

    Readers (the sensor, the assets) therefore never see a half-written file: the
    temp file's name does not match the item pattern, and ``os.replace`` is atomic
    on one filesystem.
    """
    raw_dir.mkdir(parents=True, exist_ok=True)
    target = raw_dir / item_file_name(item.item_id)
    fd, tmp_name = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=raw_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(item.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def read_item_file(path: Path) -> CrawledItem:
    """Load and validate one item file; raise ItemFileError with the reason if it is unusable."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ItemFileError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    if not raw.strip():
        raise ItemFileError(f"{path.name} is empty")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ItemFileError(f"{path.name} is not UTF-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ItemFileError(f"{path.name} is not valid JSON (truncated?): {exc}") from exc
    if not isinstance(data, dict):
        raise ItemFileError(f"{path.name} holds a {type(data).__name__}, not an object")
    missing = [name for name in REQUIRED_FIELDS if name not in data]
    if missing:
        raise ItemFileError(f"{path.name} is missing field(s): {', '.join(missing)}")
    values = {k: v for k, v in data.items() if k in FIELD_TYPES}
    for name, value in values.items():
        # Every field is checked: one wrongly typed value must fail this item, not the batch.
        expected = FIELD_TYPES[name]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ItemFileError(f"{path.name}: '{name}' must be {_TYPE_NAMES[expected]}")
    if not all(isinstance(link, str) for link in values.get("links", [])):
        raise ItemFileError(f"{path.name}: 'links' must be a list of strings")
    item = CrawledItem(**values)
    expected = key_from_file_name(path.name)
    if expected is not None and item.item_id != expected:
        raise ItemFileError(f"{path.name}: item_id {item.item_id!r} does not match its file name")
    return item
