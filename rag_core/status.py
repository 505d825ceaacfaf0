"""Progress figures read from the stores themselves, so they are true after a crash too."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from rag_core import store
from rag_core.items import key_from_file_name


@dataclass(frozen=True)
class StoreCounts:
    """How far ingestion got: item files on disk and rows in each DuckDB table."""

    files: int
    raw_items: int
    documents: int
    chunks: int
    embeddings: int
    errors: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def item_keys_on_disk(raw_dir: Path) -> list[str]:
    """Partition keys of every item file in ``raw_dir``."""
    if not raw_dir.is_dir():
        return []
    return [
        key
        for name in sorted(p.name for p in raw_dir.iterdir())
        if (key := key_from_file_name(name))
    ]


def table_counts(db_path: Path, timeout_s: float = 30.0) -> dict[str, int]:
    """Row counts of the item tables and ingest_errors (0 where absent); waits out writers."""
    names = (*store.ITEM_TABLES, "ingest_errors")
    counts = dict.fromkeys(names, 0)
    if not db_path.exists():
        return counts
    with store.connect(db_path, read_only=True, timeout_s=timeout_s) as con:
        for name in names:
            if store.table_exists(con, name):
                counts[name] = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
    return counts


def store_counts(raw_dir: Path, db_path: Path) -> StoreCounts:
    """Files on disk plus table counts."""
    counts = table_counts(db_path)
    return StoreCounts(
        files=len(item_keys_on_disk(raw_dir)),
        raw_items=counts["raw_items"],
        documents=counts["documents"],
        chunks=counts["chunks"],
        embeddings=counts["embeddings"],
        errors=counts["ingest_errors"],
    )
