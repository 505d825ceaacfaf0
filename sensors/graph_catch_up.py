"""Sensor: once the graph server answers again, write the item partitions it missed, in one run.

An ingestion run writes DuckDB first and the graph last (``graph_pages``), so during a
graph outage the run fails at its last step with DuckDB complete. A partition missed
the graph exactly when its latest ``embeddings`` materialization is newer than its
latest (successful) ``graph_pages`` one; Dagster's event log holds both per partition.
The same rule backfills the whole graph when USE_NEO4J is switched on for a store
that was ingested without it.
"""

import time

import dagster as dg

from rag_assets.graph import graph_pages
from rag_assets.jobs import graph_catch_up_job
from rag_core.constants import (
    BATCH_ITEMS_TAG,
    EMBEDDINGS_ASSET,
    GRAPH_CATCH_UP_JOB,
    GRAPH_CATCH_UP_SENSOR,
    ITEMS_PARTITIONS,
    LANE_INGEST,
)
from resources.graph_sink import GraphSinkError, Neo4jGraphSink
from sensors.raw_item_files import lane_in_flight

# After a catch-up run failed although the server answered (bad data, a Cypher error), wait
# this long before the next, doubling per consecutive failure: never a failing run per tick.
FAILURE_BACKOFF_S = 60.0
MAX_FAILURE_BACKOFF_S = 3600.0
DONE = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def stale_partitions(instance: dg.DagsterInstance) -> list[str]:
    """Item partitions (in registration order) whose embeddings are newer than their graph write."""
    storage = instance.event_log_storage
    event = dg.DagsterEventType.ASSET_MATERIALIZATION
    # Storage ids grow with every event, so comparing them orders the two materializations.
    embedded = storage.get_latest_storage_id_by_partition(
        dg.AssetKey(EMBEDDINGS_ASSET), event
    )
    written = storage.get_latest_storage_id_by_partition(graph_pages.key, event)
    stale = {key for key, sid in embedded.items() if sid > written.get(key, -1)}
    if not stale:
        return []
    return [k for k in instance.get_dynamic_partitions(ITEMS_PARTITIONS) if k in stale]


def failure_backoff_remaining(instance: dg.DagsterInstance, now: float | None = None) -> float:
    """Seconds still to wait because the latest catch-up run(s) failed (0 when none did)."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=GRAPH_CATCH_UP_JOB, statuses=DONE), limit=10
    )
    failures = 0
    for record in records:  # newest first
        if record.dagster_run.status == dg.DagsterRunStatus.SUCCESS:
            break
        failures += 1
    if not failures:
        return 0.0
    wait = min(FAILURE_BACKOFF_S * 2 ** (failures - 1), MAX_FAILURE_BACKOFF_S)
    ended = records[0].end_time or records[0].update_timestamp.timestamp()
    return max(0.0, ended + wait - (time.time() if now is None else now))


def evaluate_catch_up(
    context: dg.SensorEvaluationContext, graph: Neo4jGraphSink
) -> dg.SensorResult | dg.SkipReason:
    """One tick: request one graph_pages run over the stale partitions if nothing blocks it."""
    instance = context.instance
    # An ingestion run in flight writes the graph itself (and shares DuckDB): wait for it.
    if lane_in_flight(instance, LANE_INGEST):
        return dg.SkipReason("an ingestion or catch-up run is in flight")
    stale = stale_partitions(instance)
    if not stale:
        return dg.SkipReason("the graph is up to date with the embeddings")
    remaining = failure_backoff_remaining(instance)
    if remaining > 0:
        return dg.SkipReason(
            f"{len(stale)} partition(s) wait: the last catch-up run failed, next try in "
            f"{remaining:.0f} s"
        )
    try:
        graph.check()
    except GraphSinkError as exc:  # still down: no run that can only fail
        return dg.SkipReason(f"{len(stale)} partition(s) wait for the graph server: {exc}")
    context.log.info(f"requesting one graph_pages run for {len(stale)} missed partition(s)")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                job_name=GRAPH_CATCH_UP_JOB,
                tags={
                    "dagster/asset_partition_range_start": stale[0],
                    "dagster/asset_partition_range_end": stale[-1],
                    BATCH_ITEMS_TAG: str(len(stale)),
                },
            )
        ]
    )


@dg.sensor(
    name=GRAPH_CATCH_UP_SENSOR,
    job=graph_catch_up_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Finds item partitions whose embeddings are newer than their graph write (missed "
        "during a graph outage, or ingested before USE_NEO4J was on) and, when the graph "
        "server answers and no ingestion run is in flight, requests ONE graph_pages run "
        "over their partition range."
    ),
)
def graph_catch_up(context: dg.SensorEvaluationContext, graph: Neo4jGraphSink):
    """Writes the partitions the graph missed once its server answers again."""
    return evaluate_catch_up(context, graph)
