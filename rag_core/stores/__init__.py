"""The platform's stores: the ``Store`` interface and its implementations.

``open_store(settings)`` is the one place that picks an implementation; everything else
holds a ``Store`` and calls its methods (no SQL outside this package).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rag_core.stores.base import (
    CHUNK_COLUMNS,
    DOC_COLUMNS,
    ITEM_TABLES,
    RAW_COLUMNS,
    STAGING_TABLES,
    TABLE_COLUMNS,
    VECTOR_COLUMNS,
    Store,
    StoreLockedError,
    columns,
)
from rag_core.stores.duckdb_store import DuckDBStore, MemoryStore

if TYPE_CHECKING:
    from rag_core.settings import Settings


def store_at(path: Path | str, lock_timeout_s: float = 120.0) -> Store:
    """The store kept in the file at ``path``."""
    return DuckDBStore(path, lock_timeout_s)


def open_store(settings: Settings, lock_timeout_s: float = 120.0) -> Store:
    """The store the settings name (DUCKDB_PATH)."""
    return store_at(settings.duckdb_path, lock_timeout_s)


__all__ = [
    "CHUNK_COLUMNS",
    "DOC_COLUMNS",
    "ITEM_TABLES",
    "RAW_COLUMNS",
    "STAGING_TABLES",
    "TABLE_COLUMNS",
    "VECTOR_COLUMNS",
    "DuckDBStore",
    "MemoryStore",
    "Store",
    "StoreLockedError",
    "columns",
    "open_store",
    "store_at",
]
