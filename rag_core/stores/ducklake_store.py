"""The DuckLake store: the same tables and SQL as the DuckDB file, for many writers.

DuckLake keeps its catalog (tables, snapshots, which Parquet file holds what) in a Postgres
database and its data as Parquet files on a path every worker shares. ``DuckLakeStore`` is
a ``DuckDBStore`` whose connections are in-memory DuckDBs with the lake attached and in use,
so the DuckDB store's SQL (rag_core/stores/duckdb_store.py) runs on it unchanged; it
overrides only the Store's override points: how a connection is opened, no PRIMARY KEY
constraints (DuckLake has none) and vectors as FLOAT[] lists ranked with
list_cosine_similarity (DuckLake rejects fixed-size arrays: "unsupported type FLOAT[3]").

Writers: DuckLake commits optimistically and fails a transaction that conflicts with one
committed meanwhile (two deletes on the same table). A write connection therefore holds a
Postgres advisory lock while it is open (a short transaction: the embedding work happens
before it, in parallel on every worker), so writes queue instead of failing. A killed
writer's lock goes with its Postgres session.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb

from rag_core import stores
from rag_core.stores import duckdb_store as sql
from rag_core.stores.duckdb_impl import DuckDBStore

# The database name the lake is attached under.
LAKE_ALIAS = "lake"

# pg_advisory_lock key of the lake's writers (any constant: it only has to be the same).
WRITE_LOCK_KEY = 0x7261675F6C616B65  # b"rag_lake"
# The catalog is created by the first ATTACH; two processes doing that at once may collide.
ATTACH_ATTEMPTS = 5


def extension_path(module_name: str, extension: str) -> str:
    """The extension binary shipped in a duckdb-extension-* wheel (LOADs with no network)."""
    import importlib

    module = importlib.import_module(module_name)
    root = Path(module.__file__).parent / "extensions"
    path = root / f"v{duckdb.__version__}" / f"{extension}.duckdb_extension"
    if not path.is_file():
        found = sorted(p.parent.name for p in root.glob(f"v*/{extension}.duckdb_extension"))
        raise RuntimeError(
            f"the {extension} extension for DuckDB {duckdb.__version__} is not installed (the "
            f"{module_name} wheel has {found or 'none'}): pip install -e '.[distributed]'"
        )
    return str(path)


def load_extensions(con: duckdb.DuckDBPyConnection) -> None:
    """LOAD postgres_scanner and ducklake from their wheels; never download one."""
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute(f"LOAD '{extension_path('duckdb_extension_postgres_scanner', 'postgres_scanner')}'")
    con.execute(f"LOAD '{extension_path('duckdb_extension_ducklake', 'ducklake')}'")


def open_lake(
    catalog: str, data_path: str, read_only: bool = False
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake attached as ``LAKE_ALIAS`` and in use."""
    Path(data_path).mkdir(parents=True, exist_ok=True)
    quoted = catalog.replace("'", "''")
    options = f"DATA_PATH '{str(Path(data_path)).rstrip('/')}/'" + (
        ", READ_ONLY" if read_only else ""
    )
    for attempt in range(ATTACH_ATTEMPTS):
        con = duckdb.connect()
        try:
            load_extensions(con)
            con.execute(f"ATTACH 'ducklake:postgres:{quoted}' AS {LAKE_ALIAS} ({options})")
            con.execute(f"USE {LAKE_ALIAS}")
            return con
        except duckdb.Error:
            con.close()
            if attempt == ATTACH_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


@contextlib.contextmanager
def lake_connection(
    catalog: str, data_path: str, read_only: bool
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A lake connection; a writing one holds the writers' advisory lock while open."""
    lock = None if read_only else _write_lock(catalog)
    try:
        try:
            con = open_lake(catalog, data_path, read_only)
        except duckdb.Error as exc:
            # A reader (the sensor, `rag status`) may come before any writer created the
            # lake: create it (empty) once, then attach read-only as asked.
            if not read_only or "does not exist" not in str(exc):
                raise
            with lake_connection(catalog, data_path, read_only=False):
                pass
            con = open_lake(catalog, data_path, read_only)
        try:
            yield con
        finally:
            con.close()
    finally:
        if lock is not None:
            lock.close()  # ends the session: Postgres releases the advisory lock


def _write_lock(catalog: str):
    import psycopg2  # installed with dagster-postgres (the distributed extra)

    pg = psycopg2.connect(catalog)
    pg.autocommit = True
    with pg.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (WRITE_LOCK_KEY,))
    return pg


class DuckLakeStore(DuckDBStore):
    """The Store on a DuckLake catalog (Postgres) and its shared data path: many writers."""

    def __init__(self, catalog: str, data_path: Path | str, path: Path | str,
                 lock_timeout_s: float = 120.0) -> None:
        # ``path`` is the DUCKDB_PATH this store stands for (where callers ask for it).
        super().__init__(path, lock_timeout_s)
        self.catalog, self.data_path = catalog, str(data_path)

    def __repr__(self) -> str:
        return f"DuckLakeStore(data_path={self.data_path!r})"  # never the catalog's password

    def vector_type(self, dim: int) -> str:
        return "FLOAT[]"

    def vector_score(self, query: Sequence[float]) -> str:
        # Ranked as lists; bench/scale_out.py measures this against casting each row to
        # FLOAT[n] in the query.
        return f"list_cosine_similarity(e.embedding, {sql.vector_literal(query)}::FLOAT[])"

    def table_ddl(self, table: str, vector_type: str | None = None) -> str:
        # DuckLake has no PRIMARY KEY/UNIQUE constraints ("not supported in DuckLake"); the
        # writes never rely on them: each replaces an item's rows (delete, then insert).
        ddl = super().table_ddl(table, vector_type)
        return re.sub(r",\s*PRIMARY KEY \([^)]*\)", "", ddl).replace(" PRIMARY KEY", "")

    @contextlib.contextmanager
    def _open(self, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        with lake_connection(self.catalog, self.data_path, read_only) as con:
            yield con

    def exists(self) -> bool:
        return True  # a reader before any writer finds an empty lake (created on first open)


def register(settings) -> None:
    """Serve DUCKDB_PATH with the lake in this process: every caller of stores.store_at
    (assets, sensor, status, search, metrics) then reads and writes the lake."""
    stores.register(
        settings.duckdb_path,
        lambda lock_timeout_s: DuckLakeStore(
            settings.ducklake_catalog,
            settings.ducklake_data_path,
            settings.duckdb_path,
            lock_timeout_s,
        ),
    )
