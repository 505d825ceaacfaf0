"""Where the time of one DuckLake connection goes (what every `rag search` on the lake pays).

    python -m bench.lake_connection            # as the store opens it (signed extensions)
    python -m bench.lake_connection --unsigned # the same with signature checks off

A throwaway Postgres catalog (tests/distributed_servers.py) with an empty lake; each of
``--n`` connections is timed step by step, as rag_core/stores/ducklake_store.open_lake does
it: an in-memory DuckDB, LOAD postgres_scanner, LOAD ducklake (both from their wheels),
ATTACH the lake read-only, one small query. Medians in ms, the first two rounds not counted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from rag_core import stores
from rag_core.stores import ducklake_store
from tests.distributed_servers import postgres_server
from tests.helpers import settings_for

STEPS = ("connect", "load_postgres_scanner", "load_ducklake", "attach", "query")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12)
    parser.add_argument(
        "--unsigned",
        action="store_true",
        help="allow_unsigned_extensions: DuckDB does not verify the extension binaries",
    )
    args = parser.parse_args()
    config = {"allow_unsigned_extensions": "true"} if args.unsigned else {}
    root = Path(tempfile.mkdtemp(prefix="lake-connection-"))
    with postgres_server(root / "pg") as pg:
        pg.create_database("lake")
        settings = settings_for(root, STORE_BACKEND="ducklake", DUCKLAKE_CATALOG=pg.dsn("lake"))
        stores.open_store(settings).mark_files_started({"a": 1})  # the lake and its tables
        extensions = [
            ducklake_store.extension_path("duckdb_extension_postgres_scanner", "postgres_scanner"),
            ducklake_store.extension_path("duckdb_extension_ducklake", "ducklake"),
        ]
        catalog = settings.ducklake_catalog.replace("'", "''")
        attach = (
            f"ATTACH 'ducklake:postgres:{catalog}' AS lake "
            f"(DATA_PATH '{settings.ducklake_data_path}/', READ_ONLY)"
        )
        times: dict[str, list[float]] = {step: [] for step in STEPS}
        for round_ in range(args.n + 2):
            marks = [time.perf_counter()]
            con = duckdb.connect(config=config)
            marks.append(time.perf_counter())
            con.execute("SET autoinstall_known_extensions = false")
            con.execute("SET autoload_known_extensions = false")
            for path in extensions:
                con.execute(f"LOAD '{path}'")
                marks.append(time.perf_counter())
            con.execute(attach)
            con.execute("USE lake")
            marks.append(time.perf_counter())
            con.execute("SELECT count(*) FROM ingested_files").fetchall()
            marks.append(time.perf_counter())
            con.close()
            if round_ >= 2:
                for step, start, end in zip(STEPS, marks[:-1], marks[1:], strict=True):
                    times[step].append((end - start) * 1000)
    medians = {step: round(statistics.median(v), 1) for step, v in times.items()}
    medians["total"] = round(sum(medians.values()), 1)
    sizes = {Path(p).stem: Path(p).stat().st_size // 2**20 for p in extensions}
    print(f"{'unsigned' if args.unsigned else 'signed'} ms: {medians}; binaries MiB: {sizes}")


if __name__ == "__main__":
    main()
