"""DuckDB resource: hands out the Store every ingestion stage reads and writes."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from rag_core import stores


class DuckDBStore(dg.ConfigurableResource):
    """The store (rag_core.stores) on the DuckDB file at ``path``: assets, checks and sensors
    call ``get_store()`` and its methods, never SQL. Each call opens the file briefly."""

    path: str
    lock_timeout_seconds: float = 120.0

    def get_store(self, lock_timeout_seconds: float | None = None) -> stores.Store:
        """The Store; ``lock_timeout_seconds`` shortens the wait for a busy file (sensors)."""
        if lock_timeout_seconds is None:
            lock_timeout_seconds = self.lock_timeout_seconds
        return stores.store_at(Path(self.path), lock_timeout_seconds)
