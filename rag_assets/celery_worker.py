"""The Celery app of an ingestion worker: ``celery -A rag_assets.celery_worker worker -Q dagster``.

Run with ``--pool solo``: each step executes in the worker process itself, so the embedding
model it loads stays in that process (resources/embedder.py keeps it per process) and every
later step on the worker finds it warm.
"""

from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from rag_assets.distributed import celery_app_args
from rag_core.settings import load_settings

app = make_app(celery_app_args(load_settings()))
execute_plan = create_task(app)
