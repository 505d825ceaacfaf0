"""Reconciliation: item files on disk whose version the stores do not hold, and when to ask
for them again.

Once the sensor requests a run, its keys leave the cursor; if that run fails for good (out
of memory, a lock held too long, an embedder that keeps raising), nothing else would bring
those pages back: the crawler does not rewrite unchanged files. So the sensor compares the
directory listing it already has with ``ingested_files`` (one query, at most every
RECONCILE_INTERVAL_S, and at the start of every ``rag run``) and asks again, with
exponential backoff; after MAX_ATTEMPTS the item is recorded once in ``ingest_errors`` and
left alone until its file changes.
"""

from __future__ import annotations

import os
from pathlib import Path

RECONCILE_INTERVAL_S = 60.0
RECONCILE_BACKOFF_S = 60.0
MAX_ATTEMPTS = 3
REQUEST_FILE = ".reconcile"
GAVE_UP = (
    "not ingested after {n} runs (each failed as a whole; see the failed runs in the Dagster "
    "UI); asked for again when its file changes"
)


def unstored(
    files: list[tuple[str, int]], ingested: dict[str, tuple], fingerprint: str | None = None
) -> list[str]:
    """Keys whose file version is not the one the stores hold under ``fingerprint`` (or
    whose run never ended). A changed index fingerprint (settings, model weights) makes
    every page unstored: they are re-processed from their item files, no re-crawl needed.

    Only meaningful while no ingestion run is in flight ("started" = the run died).
    """
    out = []
    for key, mtime in files:
        record = ingested.get(key)
        if (
            record is None
            or record[0] != mtime
            or record[1] == "started"
            or (fingerprint is not None and record[2] != fingerprint)
        ):
            out.append(key)
    return out


def plan_retries(
    missing: list[str],
    attempts: dict[str, list[float]],
    now: float,
    backoff_s: float = RECONCILE_BACKOFF_S,
    max_attempts: int = MAX_ATTEMPTS,
    force: bool = False,
) -> tuple[list[str], list[str], dict[str, list[float]]]:
    """(keys to request now, keys to give up on, the new attempts map).

    ``attempts`` maps a key to [requests so far, earliest next request]; keys stored
    meanwhile are forgotten. ``force`` ignores the wait (not the count).
    """
    retry, give_up, kept = [], [], {}
    for key in missing:
        count, next_at = attempts.get(key, [0, 0.0])
        if now < next_at and not force:
            kept[key] = [count, next_at]
        elif count >= max_attempts:
            give_up.append(key)
        else:
            retry.append(key)
            kept[key] = [count + 1, now + backoff_s * 2**count]
    return retry, give_up, kept


def request_reconcile(raw_dir: Path) -> None:
    """Ask the sensor to reconcile on its next tick (``rag run`` does at start)."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    path = raw_dir / REQUEST_FILE
    path.touch()
    os.utime(path)


def reconcile_requested_at(raw_dir: Path) -> float:
    """When reconciliation was last asked for (0 = never)."""
    try:
        return (raw_dir / REQUEST_FILE).stat().st_mtime
    except OSError:
        return 0.0
