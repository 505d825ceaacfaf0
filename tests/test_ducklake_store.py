"""The DuckLake store against a real PostgreSQL catalog (Debian package, throwaway cluster)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rag_core import stores
from rag_core.settings import SettingsError
from rag_core.stores import ducklake_store
from rag_core.stores.ducklake_store import DuckLakeStore
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


DOCS = [
    ("a", "http://x/a", "Alpha", "alpha", "h1", 1, [], None),
    ("b", "http://x/b", "Beta", "beta", "h2", 1, [], None),
]
CHUNKS = [("a0", "a", 0, "", "alpha", 1, "h1"), ("b0", "b", 0, "", "beta", 1, "h2")]


def publish_two(lake, fingerprint: str = "fp") -> np.ndarray:
    """Stage and publish pages a and b with unit vectors on the first two axes."""
    vectors = np.eye(4, dtype=np.float32)
    lake.stage_documents(["a", "b"], DOCS, {}, "run")
    lake.stage_chunks(["a", "b"], CHUNKS, {}, "run")
    lake.publish(
        ["a", "b"],
        [("a0", "a", "m", fingerprint, vectors[0].tolist()),
         ("b0", "b", "m", fingerprint, vectors[1].tolist())],
        4,
    )  # fmt: skip
    return vectors


def test_lake_takes_the_store_sql_and_ranks_vectors(tmp_path, pg):
    settings = lake_settings(tmp_path, pg, "lake_sql")
    path = settings.duckdb_path
    lake = stores.open_store(settings)  # the settings registered the lake for DUCKDB_PATH
    assert isinstance(lake, DuckLakeStore)
    assert lake.exists() and not path.exists()  # nothing local: the lake is the store
    # A reader before any writer (the sensor's first tick) finds an empty lake, not an error.
    assert lake.ingested_files() == {}
    assert lake.embeddings_dimension() is None  # no vector stored yet
    vectors = publish_two(lake)
    assert lake.embeddings_dimension() == 4
    ranked = lake.vector_candidates(vectors[1].tolist(), "fp", 2)
    assert [r[0] for r in ranked] == ["b0", "a0"]
    assert ranked[0][-1] == pytest.approx(1.0)
    assert lake.table_counts()["documents"] == 2
    # A second model of another width is refused, as on the DuckDB file.
    with pytest.raises(ValueError, match="4-dimensional"):
        lake.publish(["c"], [("c0", "c", "m2", "fp2", [0.0] * 8)], 8)


def test_concurrent_writers_queue_and_lose_nothing(tmp_path, pg):
    settings = lake_settings(tmp_path, pg, "lake_writers")
    lake = stores.open_store(settings)
    lake.mark_files_started({})
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for round_ in range(3):
                lake.mark_files_started({f"w{n}-{i}": round_ for i in range(5)})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    rows = lake.ingested_files()
    assert len(rows) == 20 and {v[0] for v in rows.values()} == {2}  # replaced, not duplicated


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
    file_store = stores.store_at(tmp_path / "lake.duckdb")
    assert type(file_store) is stores.DuckDBStore  # nothing registered for this path
    file_store.publish([], [], 3)
    assert (tmp_path / "lake.duckdb").exists()
    assert file_store.embeddings_dimension() == 3  # FLOAT[3], keys kept


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
    from rag_app import status
    from rag_app.search import SearchError, search
    from rag_core.fingerprint import settings_fingerprint

    settings = lake_settings(tmp_path, pg, "lake_search")
    publish_two(stores.open_store(settings), settings_fingerprint(settings))
    hits = search(settings, "what is beta", 2, UnitEmbedder(), mode="vector")
    assert [h.chunk_id for h in hits] == ["b0", "a0"] and hits[0].title == "Beta"
    with pytest.raises(SearchError, match="--mode vector"):
        search(settings, "what is beta", 2, UnitEmbedder(), mode="hybrid")
    counts = status.table_counts(settings.duckdb_path)
    assert counts["documents"] == 2 and counts["embeddings"] == 2


def test_rag_run_refuses_the_distributed_profile(tmp_path, monkeypatch, capsys):
    from rag_app import cli

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
