"""Where the time goes in a ``rag run``: its Dagster instance's runs, steps and metadata.

Reads ``DATA_DIR/dagster_home`` after the run (nothing else is writing then) and gives, per
run: plan (created -> RUN_ENQUEUED: writing its ASSET_MATERIALIZATION_PLANNED events),
queue (-> RUN_STARTING), launch (-> RUN_START: new process, code load), each step's
duration, the embeddings step's own figures (encode_s, embedded) and the number of events
written; and the gaps between one ingestion run's end and the next one's creation.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from pathlib import Path

from rag_core.constants import BATCH_ITEMS_TAG, LANE_TAG

KEPT_METADATA = ("items", "embedded", "reused", "encode_s", "elapsed_s", "chunks", "computed")
# Where the ingest step's own thread spends its time while the encoder works beside it
# (rag_assets/ingest.py), and when the encoder first got work.
STEP_PHASES = (
    "read_s", "extract_s", "chunk_s", "stage_s", "publish_s", "log_events_s",
    "wait_for_encoder_s", "first_encode_after_s",
)  # fmt: skip


def profile(dagster_home: Path, t0: float) -> dict:
    """Runs of the instance at ``dagster_home`` with times relative to ``t0`` (epoch)."""
    with tempfile.TemporaryDirectory(prefix="bench-instance-") as config_dir:
        with _open_instance(Path(dagster_home), Path(config_dir)) as instance:
            runs = [_run(instance, record, t0) for record in _records(instance)]
    return {"runs": runs, **totals(runs)}


def _open_instance(dagster_home: Path, config_dir: Path):
    """The instance's run and event storage, whatever the repository's dagster.yaml says now.

    DAGSTER_HOME/dagster.yaml is a link to the repository's, which may have changed since
    the run and may name a storage class of its own: open Dagster's SQLite storage directly,
    at DAGSTER_HOME (Dagster's default) or DAGSTER_HOME/storage (the project's
    FastSqliteStorage), whichever holds more runs.
    """
    import dagster as dg

    bases = [
        base
        for base in (dagster_home, dagster_home / "storage")
        if (base / "history" / "runs.db").exists()
    ]
    if not bases:
        raise FileNotFoundError(f"no Dagster run storage under {dagster_home}")
    base = max(bases, key=lambda b: (_run_count(b / "history" / "runs.db"), b.stat().st_mtime))
    (config_dir / "dagster.yaml").write_text(
        f"storage:\n  sqlite:\n    base_dir: {base}\ntelemetry:\n  enabled: false\n"
    )
    return dg.DagsterInstance.from_config(str(config_dir))


def _run_count(runs_db: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{runs_db}?mode=ro", uri=True)) as con:
            return int(con.execute("SELECT count(*) FROM runs").fetchone()[0])
    except sqlite3.Error:
        return 0


def _records(instance) -> list:
    return sorted(instance.get_run_records(), key=lambda r: r.create_timestamp.timestamp())


def _run(instance, record, t0: float) -> dict:
    run = record.dagster_run
    first: dict[str, float] = {}
    count = 0
    steps: dict[str, dict[str, float]] = {}
    meta: dict[str, dict] = {}
    for entry in instance.all_logs(run.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        kind = event.event_type_value
        count += 1
        first.setdefault(kind, entry.timestamp)
        if event.step_key and kind in ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE"):
            steps.setdefault(event.step_key, {})[kind] = entry.timestamp
        mat = entry.asset_materialization if kind == "ASSET_MATERIALIZATION" else None
        if mat is not None:
            # One materialization per partition, all with the step's metadata: keep the first.
            meta.setdefault(
                mat.asset_key.to_user_string(),
                {
                    k: getattr(v, "value", v)
                    for k, v in mat.metadata.items()
                    if k in KEPT_METADATA or k in STEP_PHASES
                },
            )

    def rel(ts: float | None) -> float | None:
        return round(ts - t0, 2) if ts else None

    created = record.create_timestamp.timestamp()
    enqueued = first.get("PIPELINE_ENQUEUED") or first.get("RUN_ENQUEUED")
    starting = first.get("PIPELINE_STARTING") or first.get("RUN_STARTING")
    start = first.get("PIPELINE_START") or first.get("RUN_START")
    end = record.end_time
    return {
        "run_id": run.run_id[:8],
        "lane": run.tags.get(LANE_TAG, ""),
        "items": int(run.tags.get(BATCH_ITEMS_TAG, 0) or 0),
        "status": run.status.value,
        "created": rel(created),
        "starting": rel(starting),
        "started": rel(start),
        "ended": rel(end),
        # created -> enqueued: writing the run's ASSET_MATERIALIZATION_PLANNED events (one per
        # asset and partition); enqueued -> starting: the run queue and the launcher.
        "plan_s": round(enqueued - created, 2) if enqueued else None,
        "queue_s": round(starting - (enqueued or created), 2) if starting else None,
        "launch_s": round(start - starting, 2) if start and starting else None,
        "run_s": round(end - start, 2) if end and start else None,
        "steps_s": {
            key: round(s["STEP_SUCCESS"] - s["STEP_START"], 2)
            for key, s in steps.items()
            if "STEP_START" in s and "STEP_SUCCESS" in s
        },
        "events": count,
        "embeddings": meta.get("embeddings", {}),
    }


def totals(runs: list[dict]) -> dict:
    """Sums over the ingestion runs, and the gaps between one's end and the next's creation."""
    ingest = [r for r in runs if r["lane"] == "ingest"]
    gaps = [
        round(nxt["created"] - prev["ended"], 2)
        for prev, nxt in zip(ingest, ingest[1:], strict=False)
        if prev["ended"] is not None and nxt["created"] is not None
    ]
    steps: dict[str, float] = {}
    for run in ingest:
        for key, value in run["steps_s"].items():
            steps[key] = round(steps.get(key, 0.0) + value, 2)
    return {
        "ingestion_runs": len(ingest),
        "ingest_plan_s": round(sum(r["plan_s"] or 0 for r in ingest), 2),
        "ingest_queue_s": round(sum(r["queue_s"] or 0 for r in ingest), 2),
        "ingest_events": sum(r["events"] for r in ingest),
        "ingest_items": sum(r["items"] for r in ingest),
        "ingest_step_phases_s": {
            phase: round(sum(float(r["embeddings"].get(phase) or 0) for r in ingest), 2)
            for phase in STEP_PHASES
            if any(phase in r["embeddings"] for r in ingest)
        },
        "ingest_launch_s": round(sum(r["launch_s"] or 0 for r in ingest), 2),
        "ingest_run_s": round(sum(r["run_s"] or 0 for r in ingest), 2),
        "ingest_steps_s": steps,
        "ingest_encode_s": round(
            sum(float(r["embeddings"].get("encode_s") or 0) for r in ingest), 2
        ),
        "embedded": sum(int(r["embeddings"].get("embedded") or 0) for r in ingest),
        "reused": sum(int(r["embeddings"].get("reused") or 0) for r in ingest),
        "gaps_between_ingest_runs_s": gaps,
    }


def markdown(name: str, prof: dict, phases: dict) -> str:
    """A per-run table and the phase totals for RESULTS.md."""
    lines = [f"#### {name}", ""]
    if phases:
        shown = ", ".join(f"{k} {v}" for k, v in phases.items() if v is not None)
        lines += [f"Phases (s from `rag run` start): {shown}", ""]
    lines += [
        "| run | lane | items | created | plan s | queue s | launch s | run s | steps (s) | "
        "embedder calls s | events |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in prof["runs"]:
        steps = ", ".join(f"{k} {v}" for k, v in r["steps_s"].items())
        lines.append(
            f"| {r['run_id']} | {r['lane']} | {r['items'] or ''} | {r['created']} | "
            f"{r['plan_s']} | {r['queue_s']} | {r['launch_s']} | {r['run_s']} | {steps} | "
            f"{r['embeddings'].get('encode_s', '')} | {r['events']} |"
        )
    steps = ", ".join(f"{k} {v}" for k, v in prof["ingest_steps_s"].items())
    lines += [
        "",
        f"Ingestion runs: {prof['ingestion_runs']}; summed plan {prof['ingest_plan_s']} s, "
        f"queue {prof['ingest_queue_s']} s, "
        f"launch {prof['ingest_launch_s']} s, run {prof['ingest_run_s']} s (steps: {steps}), "
        f"of which embedder calls {prof['ingest_encode_s']} s; gaps between ingestion runs "
        f"(sensor tick): {prof['gaps_between_ingest_runs_s']} s; "
        f"{prof['ingest_events']} Dagster events written by the ingestion runs"
        + (
            f" ({prof['ingest_events'] / prof['ingest_items']:.1f} per item)."
            if prof.get("ingest_items")
            else "."
        ),
        "",
    ]
    phases_s = prof.get("ingest_step_phases_s") or {}
    if phases_s:
        shown = ", ".join(f"{k.removesuffix('_s')} {v}" for k, v in phases_s.items())
        lines += [f"Inside the ingest step (its thread; the encoder works beside it): {shown}", ""]
    return "\n".join(lines)
