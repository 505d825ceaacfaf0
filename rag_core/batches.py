"""Batch manifests: the exact item keys an ingestion run was requested for.

A Dagster run of a partitioned job carries a partition *range*, which Dagster resolves into
keys only when the run executes (and again for a retry). The order of the ``items``
partitions never changes (new keys are appended), but a range can still take in keys the run
was not asked for, and a prune can delete keys inside it. So the sensor writes the exact keys
into a manifest file when it requests the run, and the run's tag names the manifest: every
execution of that run, retries included, processes exactly those keys.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

MANIFEST_DIR = ".batches"
# Old enough that no retry of its run can still come (retries follow within minutes).
MANIFEST_MAX_AGE_S = 7 * 24 * 3600.0


def manifest_path(raw_dir: Path, batch_id: str) -> Path:
    """Where the manifest ``batch_id`` lives."""
    if not batch_id.isalnum():  # a tag value never becomes a path outside the folder
        raise ValueError(f"invalid batch manifest id {batch_id!r}")
    return raw_dir / MANIFEST_DIR / f"{batch_id}.json"


def write_manifest(raw_dir: Path, keys: Sequence[str]) -> str:
    """Write the keys of a new batch (atomically); return the id to put in the run's tag."""
    batch_id = uuid.uuid4().hex
    path = manifest_path(raw_dir, batch_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"keys": list(keys), "created_at": time.time()}, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return batch_id


def read_manifest(raw_dir: Path, batch_id: str) -> list[str]:
    """The keys of batch ``batch_id``; raises FileNotFoundError/ValueError when unusable."""
    data = json.loads(manifest_path(raw_dir, batch_id).read_text())
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"batch manifest {batch_id} has no list of keys")
    return keys


def remove_old_manifests(raw_dir: Path, now: float | None = None) -> int:
    """Delete manifests older than MANIFEST_MAX_AGE_S; return how many."""
    folder = raw_dir / MANIFEST_DIR
    if not folder.is_dir():
        return 0
    cutoff = (now or time.time()) - MANIFEST_MAX_AGE_S
    removed = 0
    for path in folder.glob("*.json"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            pass
    return removed
