"""Progress figures read from the stores themselves, so they are true after a crash too."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from rag_app.instance import open_instance
from rag_core import prune, stores
from rag_core.constants import EMBEDDINGS_ASSET, IN_FLIGHT_STATUSES, ITEMS_PARTITIONS
from rag_core.items import scan_item_files
from rag_core.redact import mask_secrets


@dataclass(frozen=True)
class StoreCounts:
    """How far ingestion got: item files on disk and rows in each DuckDB table."""

    files: int
    raw_items: int
    documents: int
    chunks: int
    embeddings: int
    errors: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def item_keys_on_disk(raw_dir: Path) -> list[str]:
    """Partition keys of every item file in ``raw_dir``, sorted."""
    return sorted(key for key, _ in scan_item_files(raw_dir))


def legacy_warning(raw_dir: Path) -> str | None:
    """What to do about item files still keyed in the first scheme (16 hex digits), if any."""
    from rag_core.rekey import legacy_keys

    old = legacy_keys(raw_dir)
    if not old:
        return None
    return (
        f"{len(old)} item file(s) in {raw_dir} still have 16-hex keys of the first scheme "
        f"(e.g. {old[0]}): `rag run` or `rag dev` re-keys them to readable keys from the files, "
        "with no re-crawl; a file that stays listed here is unreadable: delete it (its page "
        "comes back on the next crawl)"
    )


def table_counts(db_path: Path, timeout_s: float = 30.0) -> dict[str, int]:
    """Row counts of the item tables and ingest_errors (0 where absent); waits out writers."""
    return stores.store_at(db_path, timeout_s).table_counts()


def store_counts(raw_dir: Path, db_path: Path, timeout_s: float = 30.0) -> StoreCounts:
    """Files on disk plus table counts (waiting up to ``timeout_s`` for a writer)."""
    counts = table_counts(db_path, timeout_s)
    return StoreCounts(
        files=len(item_keys_on_disk(raw_dir)),
        raw_items=counts["raw_items"],
        documents=counts["documents"],
        chunks=counts["chunks"],
        embeddings=counts["embeddings"],
        errors=counts["ingest_errors"],
    )


def recent_errors(db_path: Path, limit: int = 200) -> list[dict]:
    """Recorded per-item failures, newest first: item, stage, URL (when known), message."""
    rows = stores.store_at(db_path).recent_errors(limit)
    return [
        {
            "item_id": r[0],
            "stage": r[1],
            "url": r[2],
            "error": r[3],
            "run_id": r[4],
            "occurred_at": r[5].isoformat() if r[5] else None,
        }
        for r in rows
    ]


def dagster_status(dagster_home: Path) -> dict:
    """Partitions and runs as the project's Dagster instance records them (empty if none yet)."""
    if not (dagster_home / "dagster.yaml").exists():
        return {"instance": None}
    import dagster as dg

    with open_instance(dagster_home) as instance:
        partitions = instance.get_dynamic_partitions(ITEMS_PARTITIONS)
        done = instance.get_materialized_partitions(dg.AssetKey(EMBEDDINGS_ASSET))
        by_status: dict[str, int] = {}
        for record in instance.get_run_records(limit=10_000):
            name = record.dagster_run.status.value
            by_status[name] = by_status.get(name, 0) + 1
        latest = instance.get_run_records(limit=1)
    in_flight = sum(by_status.get(s, 0) for s in IN_FLIGHT_STATUSES)
    return {
        "instance": str(dagster_home),
        "partitions": len(partitions),
        "partitions_embedded": len(set(partitions) & set(done)),
        "runs": by_status,
        "runs_in_flight": in_flight,
        "latest_run": (
            {
                "run_id": latest[0].dagster_run.run_id,
                "job": latest[0].dagster_run.job_name,
                "status": latest[0].dagster_run.status.value,
            }
            if latest
            else None
        ),
    }


def crawl_refusals(crawl_state_dir: Path) -> dict:
    """What the last crawl refused to keep because it came from an internal address:
    ``{"count": n, "urls": [...]}`` from its stats file (zero when there is none)."""
    import json

    path = crawl_state_dir / "last_crawl_stats.json"
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"count": 0, "urls": []}
    return {
        "count": int(stats.get("refused_internal_address") or 0),
        "urls": [mask_secrets(str(url)) for url in stats.get("refused_urls") or []],
    }


def prune_status(raw_dir: Path) -> dict:
    """Pending removals and the last refused prune (empty string when none)."""
    refused = prune.read_refusal(raw_dir)
    return {
        "pending_removals": len(prune.read_removals(raw_dir)),
        "refused": prune.describe_refusal(refused) if refused else "",
    }


def index_coverage(db_path: Path, fingerprint: str, files: int) -> dict:
    """Pages with vectors under the current index fingerprint, and under any other one."""
    counts = stores.store_at(db_path).fingerprint_counts()
    current = counts.pop(fingerprint, 0)
    return {
        "fingerprint": fingerprint,
        "pages_current": current,
        "pages_other": sum(counts.values()),
        "other_fingerprints": sorted(counts),
        "files": files,
    }


def describe_coverage(coverage: dict) -> str:
    """One line for `rag status`, the progress line and `rag search`."""
    line = (
        f"Index {coverage['fingerprint']}: {coverage['pages_current']} of "
        f"{coverage['files']} pages"
    )
    if coverage["pages_other"]:
        line += (
            f"; re-index under way, {coverage['pages_other']} page(s) still under "
            f"{', '.join(f or '(none)' for f in coverage['other_fingerprints'])} (not searched)"
        )
    return line
