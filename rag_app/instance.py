"""Opening the project's Dagster instance from Python (the CLI, the tests, the benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path


def open_instance(home: Path):
    """``DagsterInstance`` for the instance folder ``home`` (use as a context manager).

    The storage in dagster.yaml lives under ``$DAGSTER_HOME/storage``, so DAGSTER_HOME is set
    to ``home`` for this process, as the Dagster command-line tools expect it to be.
    """
    import dagster as dg

    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.from_config(str(home))
