"""Moving a data folder from the first key scheme (16 hex digits) to readable keys.

Data folders written before readable keys name their item files ``item_<16 hex>.json`` and
key their partitions and DuckDB rows the same way. Nothing needs re-crawling: every item
file holds its page's URL, so each one is rewritten under its new key (new file first, then
the old one removed; the new file's fresh mtime makes the sensor ingest it), and the old
keys are handed to the removal request that the ``removed_pages`` asset already carries out
(every table, the graph, the ``items`` partitions), on the ingest lane, so no ingestion run
is ever in flight while it happens.

Nothing is orphaned: an old file that cannot be read (so its URL, hence its new key, is
unknown) stays where it is, is still listed and ingested under its old key (its error lands
in ``ingest_errors`` as before), is reported by every re-key, and ``rag status`` says what to
do about it (delete it; the next crawl fetches the page again).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from rag_core import prune
from rag_core.ids import is_legacy_key, item_key
from rag_core.items import (
    ItemFileError,
    item_file_name,
    read_item_file,
    scan_item_files,
    write_item_atomically,
)

REKEYED = "re-keyed: now {new}"


@dataclass
class RekeyReport:
    """What a re-key did: old key -> new key, and the old files it could not read."""

    moved: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)  # old key -> reason

    def lines(self) -> list[str]:
        out = []
        if self.moved:
            out.append(
                f"Re-keyed {len(self.moved)} item file(s) from 16-hex keys to readable keys; "
                "the sensor removes the old partitions and rows and ingests them under the new "
                "keys (no re-crawl)."
            )
        for key, reason in sorted(self.unreadable.items()):
            out.append(f"Could not re-key {item_file_name(key)}: {reason}")
        return out


def legacy_keys(raw_dir: Path) -> list[str]:
    """Keys of item files still named in the first scheme."""
    return [key for key, _ in scan_item_files(raw_dir) if is_legacy_key(key)]


def rekey_item_files(raw_dir: Path) -> RekeyReport:
    """Rename every old-scheme item file to its readable key and request removal of the old
    key's partition and rows. Safe to repeat and to interrupt: the new file is written before
    the old one is removed, and a key already moved is not touched again."""
    report = RekeyReport()
    for old in legacy_keys(raw_dir):
        path = raw_dir / item_file_name(old)
        try:
            item = read_item_file(path)
        except ItemFileError as exc:
            report.unreadable[old] = str(exc)
            continue
        new = item_key(item.url)
        target = raw_dir / item_file_name(new)
        if not target.exists():
            # A newer crawl may already have written the page under its new key: keep that.
            write_item_atomically(replace(item, item_id=new), raw_dir)
        report.moved[old] = new
    # The removal request first, then the old files: if this is interrupted in between, the
    # old files are re-keyed again next time (the same new keys) and nothing is lost.
    prune.add_removals(raw_dir, {old: REKEYED.format(new=new) for old, new in report.moved.items()})
    for old in report.moved:
        (raw_dir / item_file_name(old)).unlink(missing_ok=True)
    return report
