"""The Dagster instance's SQLite storage, with commits that do not wait for the disk.

Every item partition costs about nine event-log writes per run (materialization planned and
done for four assets, an observation), and Dagster commits each one separately: with
SQLite's default ``synchronous=FULL`` that is an fsync per event, 10-30 ms on this disk,
which made the event log the largest cost of ingesting a page. In WAL mode,
``synchronous=NORMAL`` keeps every commit durable against a killed or crashed process
(what the platform's crash tests exercise) and only a power loss can drop the last commits;
the stores themselves (DuckDB, item files) do not depend on it.

A run over many partitions also writes one "materialization planned" event per asset and
partition when it is created: measured 197 s to create one run over 1,000 item partitions
(4,000 events), 1.9 s with Dagster's opt-in ``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS``
(one event per asset holding the partition subset; ``python -m bench.partition_scale``).
Dagster's documented cost of the opt-in: when a whole run fails, its partitions are not
marked *failed* in the UI (they stay missing). This platform records per-item failures in
``ingest_errors`` rather than failing partitions, and retries failed runs, so it takes the
opt-in for every process that loads this storage (daemon, code servers, UI, run workers,
the ``dagster`` CLI): the variable is read by Dagster each time it creates a run.

Configured in dagster.yaml as ``storage: custom``; the tables and files are exactly those
of Dagster's own SQLite storage, so an instance can switch back and forth.
"""

from __future__ import annotations

import os
import sqlite3

from dagster._core.storage.sqlite_storage import DagsterSqliteStorage
from sqlalchemy import event
from sqlalchemy.engine import Engine

# Dagster's own switch, not a setting of this platform: a user may still set it to false.
os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")


@event.listens_for(Engine, "connect")
def _relaxed_sync(dbapi_connection, _record) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


class FastSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage under ``$DAGSTER_HOME/storage`` with relaxed fsyncs (WAL)."""

    @classmethod
    def config_type(cls):
        from dagster import Field, StringSource

        return {"base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        base_dir = config_value.get("base_dir") or os.path.join(
            os.environ["DAGSTER_HOME"], "storage"
        )
        return cls.from_local(base_dir=base_dir, inst_data=inst_data)
