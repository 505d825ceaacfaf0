"""The platform's stores: the ``Store`` interface and its implementations.

``open_store(settings)`` is the one place that picks an implementation; everything else
holds a ``Store`` and calls its methods (no SQL outside this package).
"""

from __future__ import annotations

from collections.abc import Callable
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
from rag_core.stores.duckdb_impl import DuckDBStore, MemoryStore

if TYPE_CHECKING:
    from rag_core.settings import Settings


# Stores that are not a local DuckDB file, by the DUCKDB_PATH they stand for: a process that
# uses one (e.g. a DuckLake store for many writers) registers it at start, and every caller of
# store_at (assets, sensor, status, search, metrics) then gets it. factory(lock_timeout_s).
_REGISTERED: dict[str, Callable[[float], Store]] = {}


def register(path: Path | str, factory: Callable[[float], Store]) -> None:
    """Serve ``path`` with ``factory(lock_timeout_s)`` instead of a DuckDB file, in this process."""
    _REGISTERED[str(path)] = factory


def unregister(path: Path | str) -> None:
    """Undo ``register``."""
    _REGISTERED.pop(str(path), None)


def store_at(path: Path | str, lock_timeout_s: float = 120.0) -> Store:
    """The store for ``path``: a registered implementation, else the DuckDB file there."""
    factory = _REGISTERED.get(str(path))
    return factory(lock_timeout_s) if factory else DuckDBStore(path, lock_timeout_s)


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
    "register",
    "store_at",
    "unregister",
]
