"""The DuckDB store: one-transaction replacement, and waiting out another process's lock."""

from __future__ import annotations

import subprocess
import sys
import time

import duckdb
import pytest

from rag_core.stores import duckdb_store as store
from resources.duckdb_store import DuckDBStore

# Another process that opens the database for writing, says so, and holds it for a while.
HOLD = (
    "import duckdb, time; c = duckdb.connect({path!r}); print('held', flush=True); "
    "time.sleep({seconds}); c.close()"
)


def raw_row(key: str, url: str | None = "http://a/") -> tuple:
    """A raw_items row in the column order of rag_core.stores.RAW_COLUMNS."""
    return (key, url, url, 200, "text/html", "A", "", 10, False, [], f"/{key}.json")


def test_store_stage_replaces_rows_and_errors_in_one_go(tmp_path):
    db = DuckDBStore(path=str(tmp_path / "t.duckdb")).get_store()
    db.store_raw_items(["a", "b"], [raw_row("a")], {"b": "broken"}, "r1")
    db.store_raw_items(["a", "b"], [raw_row("a")], {"b": "broken"}, "r2")
    assert db.table_counts()["raw_items"] == 1
    assert [(e[0], e[1], e[4]) for e in db.recent_errors()] == [("b", "raw_items", "r2")]
    # b is fixed on the next run: its error row goes away.
    db.store_raw_items(["b"], [raw_row("b")], {}, "r3")
    assert db.table_counts()["ingest_errors"] == 0


def test_failed_transaction_leaves_previous_rows(tmp_path):
    db = DuckDBStore(path=str(tmp_path / "t.duckdb")).get_store()
    db.store_raw_items(["a"], [raw_row("a", "http://old/")], {}, "r1")
    with pytest.raises(duckdb.Error):
        db.store_raw_items(["a"], [raw_row("a", None)], {}, "r2")
    assert db.urls(["a"]) == {"a": "http://old/"}


def test_embeddings_dimension_mismatch_is_a_clear_error(tmp_path):
    path = tmp_path / "t.duckdb"
    with store.connect(path) as con:
        store.ensure_schema(con, 384)
        with pytest.raises(ValueError, match="DUCKDB_PATH"):
            store.ensure_schema(con, 768)


@pytest.mark.e2e
def test_connect_waits_for_another_process_to_release_the_file(tmp_path):
    path = tmp_path / "t.duckdb"
    with store.connect(path) as con:
        store.ensure_schema(con)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLD.format(path=str(path), seconds=1.5),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    with store.connect(path, read_only=True, timeout_s=30) as con:
        assert con.execute("SELECT count(*) FROM documents").fetchone() == (0,)
    assert time.monotonic() - started > 0.5  # it really waited for the lock
    holder.wait()


@pytest.mark.e2e
def test_connect_gives_up_after_the_timeout(tmp_path):
    path = tmp_path / "t.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLD.format(path=str(path), seconds=10),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(store.StoreLockedError, match="stayed locked"):
            with store.connect(path, timeout_s=0.5):
                pass
    finally:
        holder.kill()


@pytest.mark.parametrize("column", ["FLOAT[8]", "FLOAT[]"])
def test_vectors_are_inserted_exactly_in_either_column_type(tmp_path, column):
    """insert_vectors scans numpy columns instead of one DuckDB value per float; the stored
    vectors equal the float32 values given (fixed-width column, or DuckLake's FLOAT[])."""
    import numpy as np

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((300, 8)).astype(np.float32)
    rows = [
        (f"c{i}", f"item{i % 7}", "m", "fp", matrix[i].tolist() if i % 2 else matrix[i])
        for i in range(300)
    ]
    with duckdb.connect(str(tmp_path / "v.duckdb")) as con:
        con.execute(
            "CREATE TABLE embeddings (chunk_id VARCHAR, item_id VARCHAR, model VARCHAR, "
            f"fingerprint VARCHAR, embedding {column})"
        )
        store.insert_vectors(con, rows)
        store.insert_vectors(con, [])
        got = con.execute(
            "SELECT chunk_id, item_id, model, fingerprint, embedding FROM embeddings"
        ).fetchall()
    assert len(got) == 300
    by_id = {r[0]: r for r in got}
    for i in range(300):
        chunk_id, item_id, model, fingerprint, vector = by_id[f"c{i}"]
        assert (item_id, model, fingerprint) == (f"item{i % 7}", "m", "fp")
        assert np.array_equal(np.asarray(vector, dtype=np.float32), matrix[i])
