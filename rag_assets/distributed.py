"""The distributed profile's execution: the ingestion job's steps on Celery workers.

DEPLOYMENT=distributed hands each step of an ingestion run (raw_items, documents, chunks,
embeddings) to a Celery worker through Redis; the run's own process only coordinates. The
workers (``celery -A rag_assets.celery_worker worker``, README: Scale out) build the same
Celery app from the same settings, so both sides agree on broker, queue and task options.
"""

from __future__ import annotations

import dagster as dg

from rag_core.settings import Settings

# Stop the worker from taking a second step while it embeds the first (the other workers
# should get it), and hand the step of a worker that died to another one: a message is
# acknowledged only when its step is done, and Redis gives an unacknowledged one to another
# worker after the visibility timeout.
TASK_OPTIONS = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
}


def celery_app_args(settings: Settings) -> dict:
    """The executor config (and the workers' Celery app arguments) for ``settings``."""
    return {
        "broker": settings.celery_broker_url,
        "backend": settings.celery_broker_url,
        "include": [],
        "config_source": TASK_OPTIONS
        | {
            "broker_transport_options": {
                "visibility_timeout": settings.celery_visibility_timeout_seconds
            },
            "result_expires": 24 * 3600,
        },
        "retries": {"enabled": {}},
    }


def ingest_executor(settings: Settings) -> dg.ExecutorDefinition | None:
    """The Celery executor for the ingestion job with DEPLOYMENT=distributed, else None (the
    definitions' in-process executor)."""
    if settings.deployment != "distributed":
        return None
    from dagster_celery import celery_executor  # the distributed extra; imported only here

    return celery_executor.configured(celery_app_args(settings), name="celery_ingest")
