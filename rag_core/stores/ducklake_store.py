"""The DuckLake store: the same tables and SQL as the DuckDB file, for many writers.

DuckLake keeps its catalog (tables, snapshots, which Parquet file holds what) in a Postgres
database and its data as Parquet files on a path every worker shares. Each connection here is
an in-memory DuckDB with the lake attached and in use, so the DuckDB store's SQL
(rag_core/store.py) runs on it unchanged; only two things differ, through hooks there: no
PRIMARY KEY constraints and vectors as FLOAT[] lists.

Writers: DuckLake commits optimistically and fails a transaction that conflicts with one
committed meanwhile (two deletes on the same table). A write connection therefore holds a
Postgres advisory lock while it is open (a short transaction: the embedding work happens
before it, in parallel on every worker), so writes queue instead of failing. A killed
writer's lock goes with its Postgres session.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import duckdb

from rag_core import store

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
    """An in-memory DuckDB with the lake attached as ``store.LAKE_ALIAS`` and in use."""
    Path(data_path).mkdir(parents=True, exist_ok=True)
    quoted = catalog.replace("'", "''")
    options = f"DATA_PATH '{str(Path(data_path)).rstrip('/')}/'" + (
        ", READ_ONLY" if read_only else ""
    )
    for attempt in range(ATTACH_ATTEMPTS):
        con = duckdb.connect()
        try:
            load_extensions(con)
            con.execute(f"ATTACH 'ducklake:postgres:{quoted}' AS {store.LAKE_ALIAS} ({options})")
            con.execute(f"USE {store.LAKE_ALIAS}")
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


def register(settings) -> None:
    """Open the lake wherever DUCKDB_PATH would be opened (store.connect), in this process."""
    store.OPENERS[str(settings.duckdb_path)] = partial(
        lake_connection, settings.ducklake_catalog, str(settings.ducklake_data_path)
    )
