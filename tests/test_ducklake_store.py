"""The DuckLake store against a real PostgreSQL catalog (Debian package, throwaway cluster)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rag_core import store
from rag_core.settings import SettingsError
from rag_core.stores import ducklake_store
from tests.distributed_servers import postgres_server, redis_server
from tests.helpers import settings_for


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    with postgres_server(tmp_path_factory.mktemp("pg")) as server:
        yield server


def lake_settings(tmp_path, pg, db: str, **env):
    pg.create_database(db)
    return settings_for(
        tmp_path, STORE_BACKEND="ducklake", DUCKLAKE_CATALOG=pg.dsn(db), **env
    )


def test_extensions_load_from_the_wheels_offline():
    import duckdb

    con = duckdb.connect()
    ducklake_store.load_extensions(con)
    loaded = dict(
        con.execute(
            "SELECT extension_name, loaded FROM duckdb_extensions() "
            "WHERE extension_name IN ('ducklake', 'postgres_scanner')"
        ).fetchall()
    )
    assert loaded == {"ducklake": True, "postgres_scanner": True}


def test_lake_takes_the_store_sql_and_ranks_vectors(tmp_path, pg):
    settings = lake_settings(tmp_path, pg, "lake_sql")
    path = settings.duckdb_path
    assert store.exists(path) and not path.exists()  # nothing local: the lake is the store
    # A reader before any writer (the sensor's first tick) finds an empty lake, not an error.
    assert store.read_ingested_files(path, timeout_s=5) == {}
    vectors = np.eye(4, dtype=np.float32)
    with store.connect(path) as con:
        store.ensure_schema(con, dim=4)
        assert store.is_lake(con)
        assert store.embeddings_dimension(con) is None  # no vector stored yet
        with store.transaction(con):
            store.insert_rows(
                con, "staged_documents", ("item_id", "url", "text", "content_hash"),
                [("a", "http://x/a", "alpha", "h1"), ("b", "http://x/b", "beta", "h2")],
            )  # fmt: skip
            store.insert_rows(
                con, "staged_chunks",
                ("chunk_id", "item_id", "chunk_index", "text", "token_count", "content_hash"),
                [("a0", "a", 0, "alpha", 1, "h1"), ("b0", "b", 0, "beta", 1, "h2")],
            )  # fmt: skip
            rows = [("a0", "a", "m", "fp", vectors[0].tolist()),
                    ("b0", "b", "m", "fp", vectors[1].tolist())]  # fmt: skip
            store.publish_items(
                con, ["a", "b"], ("item_id", "url", "text", "content_hash"),
                ("chunk_id", "item_id", "chunk_index", "text", "token_count", "content_hash"),
                rows,
            )  # fmt: skip
    with store.connect(path, read_only=True) as con:
        assert store.embeddings_dimension(con) == 4
        ranked = store.vector_candidates(con, vectors[1].tolist(), "fp", 2)
        assert [r[0] for r in ranked] == ["b0", "a0"]
        assert ranked[0][-1] == pytest.approx(1.0)
        assert con.execute("SELECT count(*) FROM documents").fetchone()[0] == 2
    # A second model of another width is refused, as on the DuckDB file.
    with pytest.raises(ValueError, match="4-dimensional"), store.connect(path) as con:
        store.ensure_schema(con, dim=8)


def test_concurrent_writers_queue_and_lose_nothing(tmp_path, pg):
    settings = lake_settings(tmp_path, pg, "lake_writers")
    path = settings.duckdb_path
    with store.connect(path) as con:
        store.ensure_schema(con)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for round_ in range(3):
                keys = [f"w{n}-{i}" for i in range(5)]
                with store.connect(path) as con, store.transaction(con):
                    store.mark_files_started(con, {k: round_ for k in keys})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with store.connect(path, read_only=True) as con:
        rows = con.execute("SELECT item_id, mtime_ns FROM ingested_files").fetchall()
    assert len(rows) == 20 and {m for _, m in rows} == {2}  # replaced, never duplicated


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"STORE_BACKEND": "ducklake"}, "DUCKLAKE_CATALOG"),
        ({"STORAGE_MODE": "shared"}, "SHARED_DATA_PATH"),
        ({"STORAGE_MODE": "nfs"}, "STORAGE_MODE"),
        ({"DEPLOYMENT": "distributed", "CELERY_BROKER_URL": "redis://q:6379/0"}, "STORE_BACKEND"),
        ({"DEPLOYMENT": "distributed"}, "CELERY_BROKER_URL"),
        ({"INGEST_MAX_CONCURRENT_RUNS": "2"}, "INGEST_MAX_CONCURRENT_RUNS"),
        (
            {"STORE_BACKEND": "ducklake", "DUCKLAKE_CATALOG": "dbname=x",
             "CELERY_BROKER_URL": "amqp://q"},
            "CELERY_BROKER_URL",
        ),  # fmt: skip
    ],
)
def test_distributed_settings_are_validated(tmp_path, env, named):
    with pytest.raises(SettingsError, match=named):
        settings_for(tmp_path, **env)


def test_a_file_named_lake_is_still_a_file(tmp_path):
    with store.connect(tmp_path / "lake.duckdb") as con:
        store.ensure_schema(con, dim=3)
        assert not store.is_lake(con)
        assert store.embeddings_dimension(con) == 3  # FLOAT[3], keys kept


def test_shared_storage_moves_raw_items_and_lake_files(tmp_path):
    shared = tmp_path / "shared"
    settings = settings_for(tmp_path / "node", STORAGE_MODE="shared", SHARED_DATA_PATH=str(shared))
    assert settings.raw_dir == shared / "raw"
    assert settings.ducklake_data_path == shared / "lake"
    local = settings_for(tmp_path / "node")
    assert local.raw_dir == tmp_path / "node" / "raw"  # the default is unchanged


def test_redis_server_starts(tmp_path):
    import redis

    with redis_server(tmp_path) as url:
        client = redis.Redis.from_url(url)
        assert client.ping()


class UnitEmbedder:
    """A 4-dimensional stand-in for the model: 'beta' questions point at the second axis."""

    def embed(self, texts):
        return np.eye(4, dtype=np.float32)[[1 if "beta" in t else 0 for t in texts]], "test"


def test_search_and_status_read_the_lake(tmp_path, pg):
    from rag_core import status
    from rag_core.fingerprint import settings_fingerprint
    from rag_core.search import SearchError, search

    settings = lake_settings(tmp_path, pg, "lake_search")
    fp = settings_fingerprint(settings)
    with store.connect(settings.duckdb_path) as con:
        store.ensure_schema(con, dim=4)
        store.insert_rows(
            con, "documents", ("item_id", "url", "title", "text", "content_hash"),
            [("a", "http://x/a", "Alpha", "alpha", "h1"),
             ("b", "http://x/b", "Beta", "beta", "h2")],
        )  # fmt: skip
        store.insert_rows(
            con, "chunks",
            ("chunk_id", "item_id", "chunk_index", "text", "token_count", "content_hash"),
            [("a0", "a", 0, "alpha", 1, "h1"), ("b0", "b", 0, "beta", 1, "h2")],
        )  # fmt: skip
        store.insert_rows(
            con, "embeddings", ("chunk_id", "item_id", "model", "fingerprint", "embedding"),
            [("a0", "a", "m", fp, [1.0, 0, 0, 0]), ("b0", "b", "m", fp, [0, 1.0, 0, 0])],
        )  # fmt: skip
    hits = search(settings, "what is beta", 2, UnitEmbedder(), mode="vector")
    assert [h.chunk_id for h in hits] == ["b0", "a0"] and hits[0].title == "Beta"
    with pytest.raises(SearchError, match="--mode vector"):
        search(settings, "what is beta", 2, UnitEmbedder(), mode="hybrid")
    counts = status.table_counts(settings.duckdb_path)
    assert counts["documents"] == 2 and counts["embeddings"] == 2


def test_rag_run_refuses_the_distributed_profile(tmp_path, monkeypatch, capsys):
    from rag_core import cli

    env = {
        "DATA_DIR": str(tmp_path), "DEPLOYMENT": "distributed", "STORE_BACKEND": "ducklake",
        "DUCKLAKE_CATALOG": "dbname=x", "STORAGE_MODE": "shared",
        "SHARED_DATA_PATH": str(tmp_path / "shared"), "CELERY_BROKER_URL": "redis://q:6379/0",
    }  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run"]) == 2
    assert "Scale out" in capsys.readouterr().err
    assert not (tmp_path / "dagster_home").exists()  # nothing was started
