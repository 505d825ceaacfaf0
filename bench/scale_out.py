"""The distributed profile, measured on this machine (README "Scale out").

``python -m bench.scale_out --search-n 100000 --orchestration-n 500 --pages 60 --workers 1 2``

- search: top-10 vector search latency over N synthetic chunks, the local DuckDB file
  (FLOAT[384], array_cosine_similarity) against DuckLake (FLOAT[] lists,
  list_cosine_similarity, and the same lists cast to FLOAT[384] in the query), plus the cost
  of opening a connection (a lake connection loads two extensions and attaches the catalog);
- orchestration: per-item cost of Dagster's instance, SQLite (the local default's
  FastSqliteStorage) against Postgres: adding the dynamic partitions and writing the four
  per-partition materialization events an ingestion run writes for each item;
- throughput: a site of --pages item files ingested end to end (daemon, sensor, runs, Celery
  workers, DuckLake) with 1 and with 2 workers, each worker with one torch thread.

Postgres and Redis are throwaway servers started here (Debian packages, as in the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from rag_core import stores
from rag_core.constants import INGEST_JOB
from rag_core.stores import duckdb_store as sql

DIM = 384
QUESTIONS = 30


def _p50_p95(times: list[float]) -> dict:
    times = sorted(times)
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
    }


def build_local(path: Path, n: int) -> None:
    local = stores.store_at(path)
    local.publish([], [], DIM)  # creates the tables
    with local.raw_connection(read_only=False) as con:
        con.execute("SELECT setseed(0.42)")
        con.execute(
            "INSERT INTO documents (item_id, url, title, text, content_hash) "
            "SELECT 'p' || i, 'http://x/p' || i, 'Page ' || i, '', md5('p' || i) "
            f"FROM range({max(n // 10, 1)}) t(i)"
        )
        con.execute(
            "INSERT INTO chunks (chunk_id, item_id, chunk_index, text, token_count, content_hash) "
            f"SELECT 'c' || i, 'p' || (i // 10), i % 10, 'text ' || i, 60, md5('c' || i) "
            f"FROM range({n}) t(i)"
        )
        con.execute(
            "INSERT INTO embeddings (chunk_id, item_id, model, fingerprint, embedding) "
            "SELECT 'c' || i, 'p' || (i // 10), 'm', 'fp', "
            f"list_transform(range({DIM}), x -> random() - 0.5)::FLOAT[{DIM}] "
            f"FROM range({n}) t(i)"
        )


def copy_to_lake(local: Path, lake_path: Path) -> float:
    """The local file's rows into the lake in one transaction (vectors as FLOAT[])."""
    started = time.monotonic()
    lake = stores.store_at(lake_path)
    lake.publish([], [], DIM)  # creates the tables, vectors as FLOAT[]
    with lake.raw_connection(read_only=False) as con:
        con.execute(f"ATTACH '{local}' AS src (READ_ONLY)")
        with sql.transaction(con):
            for table in ("documents", "chunks"):
                con.execute(f"INSERT INTO {table} SELECT * FROM src.{table}")
            con.execute(
                "INSERT INTO embeddings (chunk_id, item_id, model, embedding, fingerprint) "
                "SELECT chunk_id, item_id, model, embedding::FLOAT[], fingerprint "
                "FROM src.embeddings"
            )
    return time.monotonic() - started


def time_queries(path: Path, sql_for=None) -> dict:
    rng = np.random.default_rng(7)
    open_times, query_times = [], []
    for i in range(QUESTIONS + 3):
        q = rng.standard_normal(DIM).astype(np.float32)
        q = (q / np.linalg.norm(q)).tolist()
        started = time.monotonic()
        store = stores.store_at(path)
        with store.raw_connection() as con:
            opened = time.monotonic()
            if sql_for is None:
                hits = sql.vector_candidates(con, q, "fp", 10, score=store.vector_score(q))
            else:
                hits = con.execute(sql_for(q)).fetchall()
            done = time.monotonic()
        assert len(hits) == 10
        if i >= 3:
            open_times.append(1000 * (opened - started))
            query_times.append(1000 * (done - opened))
    return {"open_ms": round(statistics.median(open_times), 1), **_p50_p95(query_times)}


def cast_sql(q: list[float]) -> str:
    vector = "[" + ",".join(repr(float(x)) for x in q) + f"]::FLOAT[{DIM}]"
    return (
        f"SELECT chunk_id, array_cosine_similarity(embedding::FLOAT[{DIM}], {vector}) AS s "
        "FROM embeddings WHERE fingerprint = 'fp' ORDER BY s DESC, chunk_id LIMIT 10"
    )


def bench_search(n: int, pg, work: Path) -> list[dict]:
    from tests.helpers import settings_for

    local = work / f"local-{n}.duckdb"
    build_local(local, n)
    pg.create_database(f"lake_{n}")
    lake = settings_for(
        work / f"lake-{n}", STORE_BACKEND="ducklake", DUCKLAKE_CATALOG=pg.dsn(f"lake_{n}")
    )
    load_s = copy_to_lake(local, lake.duckdb_path)
    rows = [
        {"store": "local DuckDB file, FLOAT[384]", "chunks": n, **time_queries(local)},
        {"store": "DuckLake, FLOAT[] list_cosine_similarity", "chunks": n,
         "load_s": round(load_s, 1), **time_queries(lake.duckdb_path)},
        {"store": "DuckLake, cast to FLOAT[384] in the query", "chunks": n,
         **time_queries(lake.duckdb_path, cast_sql)},
    ]  # fmt: skip
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def bench_orchestration(n: int, pg, work: Path) -> list[dict]:
    """Per item: add its partition, then the 4 materialization events of its run."""
    import dagster as dg

    from rag_core.settings import PROJECT_ROOT

    pg.create_database("dagster_bench")
    homes = {"SQLite (FastSqliteStorage)": work / "home-sqlite", "Postgres": work / "home-pg"}
    homes["SQLite (FastSqliteStorage)"].mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "dagster.yaml", homes["SQLite (FastSqliteStorage)"])
    homes["Postgres"].mkdir(parents=True)
    (homes["Postgres"] / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {pg.url('dagster_bench')}\n"
        "telemetry:\n  enabled: false\n"
    )
    rows = []
    for name, home in homes.items():
        from dagster._core.instance.ref import InstanceRef

        os.environ["DAGSTER_HOME"] = str(home)  # FastSqliteStorage keeps its files there
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            keys = [f"k{i:06d}" for i in range(n)]
            started = time.monotonic()
            for chunk in range(0, n, 100):
                instance.add_dynamic_partitions("items", keys[chunk : chunk + 100])
            partitions_s = time.monotonic() - started
            started = time.monotonic()
            for key in keys:
                for asset in ("raw_items", "documents", "chunks", "embeddings"):
                    instance.report_runless_asset_event(
                        dg.AssetMaterialization(asset_key=asset, partition=key)
                    )
            events_s = time.monotonic() - started
        row = {
            "instance": name,
            "items": n,
            "add_partition_ms_per_item": round(1000 * partitions_s / n, 2),
            "events_ms_per_item": round(1000 * events_s / n, 2),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def bench_throughput(pages: int, workers: int, pg, redis_url: str, work: Path) -> dict:
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from tests.helpers import settings_for
    from tests.test_scale_out import BIN, Cluster, write_site

    root = work / f"tp-{workers}"
    root.mkdir(parents=True)
    # Fresh databases per cluster (the lake and the instance start empty), and a Redis
    # database of its own; steps never take long enough to be handed on twice.
    broker = redis_url.rsplit("/", 1)[0] + f"/{workers}"
    cluster = Cluster(
        root, pg, redis_url, suffix=f"_w{workers}", CELERY_BROKER_URL=broker,
        CELERY_VISIBILITY_TIMEOUT_SECONDS="600",
    )  # fmt: skip
    keys = write_site(cluster.shared / "raw", pages)
    reader = settings_for(root / "reader", **{
        k: cluster.env[k] for k in ("STORE_BACKEND", "DUCKLAKE_CATALOG", "STORAGE_MODE",
                                    "SHARED_DATA_PATH")
    })  # fmt: skip
    started = time.monotonic()
    try:
        for i in range(workers):
            cluster.start_worker(f"w{i + 1}")
        cluster.start("head", [str(BIN / "dagster-daemon"), "run", "-m", "rag_assets.definitions"])
        home = cluster.node_env("head")["DAGSTER_HOME"]
        os.environ["DAGSTER_POSTGRES_URL"] = cluster.env["DAGSTER_POSTGRES_URL"]
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(home)) as instance:
            deadline = time.monotonic() + 900
            first = None
            while time.monotonic() < deadline:
                try:
                    done = stores.store_at(reader.duckdb_path, 5).ingested_files()
                except Exception:  # noqa: BLE001 - the lake may not exist yet
                    done = {}
                stored = sum(1 for v in done.values() if v[1] == "stored")
                if stored and first is None:
                    first = time.monotonic() - started
                if stored == len(keys):
                    break
                time.sleep(0.5)
            total = time.monotonic() - started
            runs = instance.get_run_records(dg.RunsFilter(job_name=INGEST_JOB))
    finally:
        cluster.stop()
    chunks = stores.store_at(reader.duckdb_path).table_counts()["embeddings"]
    row = {
        "workers": workers,
        "pages": pages,
        "chunks": chunks,
        "stored": stored,
        "wall_s": round(total, 1),
        "first_stored_s": round(first or 0, 1),
        "steady_chunks_per_s": round(chunks / max(total - (first or 0), 1e-9), 2),
        "ingestion_runs": len(runs),
    }
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out")
    parser.add_argument("--search-n", type=int, default=0)
    parser.add_argument("--orchestration-n", type=int, default=0)
    parser.add_argument("--pages", type=int, default=0)
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--out", type=Path, default=Path("bench/out/scale_out.json"))
    args = parser.parse_args(argv)
    from tests.distributed_servers import postgres_server, redis_server

    work = Path(tempfile.mkdtemp(prefix="rag-scale-bench-"))
    results: dict = {}
    try:
        with postgres_server(work / "pg") as pg, redis_server(work / "redis") as redis_url:
            if args.search_n:
                results["search"] = bench_search(args.search_n, pg, work)
            if args.orchestration_n:
                results["orchestration"] = bench_orchestration(args.orchestration_n, pg, work)
            if args.pages:
                results["throughput"] = [
                    bench_throughput(args.pages, w, pg, redis_url, work) for w in args.workers
                ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
