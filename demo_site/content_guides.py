"""Hand-written pages: Python API, concepts, tutorials and deployment guides."""

from __future__ import annotations

from demo_site.site import Page

API_INDEX = Page(
    "docs/api/index.html",
    "Python API overview",
    "Python API",
    """
The `lumen` Python package lets you define pipelines in code, run them from tests and notebooks,
and extend Lumen with your own sources and sinks. Everything documented here is public and
follows semantic versioning; names that start with an underscore are private.

## Modules

| Module | Contents |
|---|---|
| `lumen` | `Pipeline`, the `step` decorator, `secret`, `read_csv`, `write_parquet` |
| `lumen.sources` | Built-in sources: files, HTTP, PostgreSQL, MySQL, S3 |
| `lumen.sinks` | Built-in sinks: files, warehouse tables, search indexes |
| `lumen.transforms` | Reusable transforms: dedupe, validate, batch, rename |
| `lumen.testing` | Helpers for unit-testing steps and pipelines |
| `lumen.errors` | Exception classes raised by Lumen |

## Reference pages

- [Pipeline and step](pipeline.html)
- [Sources](sources.html)
- [Sinks](sinks.html)
- [Transforms](transforms.html)
- [The scheduler API](/docs/api/scheduler.html)

For a guided introduction, read the [quickstart](../getting-started/quickstart.html) first.
""",
)

API_PIPELINE = Page(
    "docs/api/pipeline.html",
    "lumen.Pipeline and lumen.step",
    "Python API",
    """
`lumen.Pipeline` groups steps into a named, schedulable unit. `lumen.step` turns a function into
a step. Together they are all you need to write most pipelines.

## lumen.Pipeline

```python
class Pipeline(
    name: str,
    *,
    schedule: str | None = None,
    max_concurrent_runs: int = 1,
    retries: int | None = None,
    tags: dict[str, str] | None = None,
    timeout: str | None = None,
)
```

| Parameter | Description |
|---|---|
| `name` | Unique pipeline name; used by `lumen run NAME` |
| `schedule` | Cron expression or `@hourly`, `@daily`, `@weekly`; `None` means manual only |
| `max_concurrent_runs` | How many runs of this pipeline may execute at once |
| `retries` | Default attempts for steps of this pipeline, overriding the project default |
| `tags` | Free-form labels shown in the UI and usable in `lumen runs list --tag` |
| `timeout` | Fail a run that takes longer than this, for example `"2h"` |

Use the pipeline as a context manager: steps called inside the `with` block are registered with
it. Calling a step inside the block does not execute it; it records a dependency.

## lumen.step

```python
def step(
    fn=None,
    *,
    name: str | None = None,
    retries: int | None = None,
    backoff: str | None = None,
    initial_delay: str | None = None,
    retry_on: list[type[Exception]] | None = None,
    timeout: str | None = None,
    cache: bool = False,
)
```

A step may declare a first parameter named `ctx` to receive the run context, which exposes
`ctx.run_id`, `ctx.logger`, `ctx.checkpoint` and `ctx.params`. The remaining parameters receive
the outputs of upstream steps, in the order the steps were called.

```python
@lumen.step(timeout="10m", cache=True)
def summarise(ctx, orders, refunds):
    ctx.logger.info("summarising %d orders", len(orders))
    return {"orders": len(orders), "refunds": len(refunds)}
```

## Running a pipeline from Python

```python
result = p.run(params={"date": "2024-05-01"})
assert result.succeeded
print(result.outputs["summarise"])
```

`Pipeline.run` executes synchronously in the current process and is the easiest way to test a
pipeline; see [testing pipelines](../tutorials/testing-pipelines.html).
""",
)

API_SOURCES = Page(
    "docs/api/sources.html",
    "Sources",
    "Python API",
    """
A source reads records from an external system. All sources implement `fetch()`, which returns
an iterator of dictionaries, and most support incremental reads through a cursor.

## Built-in sources

| Class | Reads from | Incremental cursor |
|---|---|---|
| `FileSource` | CSV, JSON Lines, Parquet on local disk or S3 | file modification time |
| `HttpSource` | Paginated JSON APIs | any response field |
| `PostgresSource` | PostgreSQL tables and queries | a monotonically increasing column |
| `MySQLSource` | MySQL and MariaDB | a monotonically increasing column |
| `S3Source` | Objects under an S3 prefix | object key or last-modified |

## Writing your own source

Subclass `lumen.sources.Source` and implement `fetch`. Yield records one at a time so that large
reads do not have to fit in memory.

```python
from lumen.sources import Source

class GitHubIssues(Source):
    def __init__(self, repo: str, token: str):
        self.repo = repo
        self.token = token

    def fetch(self, since=None):
        page = 1
        while True:
            batch = self._get(page, since)
            if not batch:
                return
            yield from batch
            page += 1
```

Sources that talk to the network should raise `lumen.errors.RateLimited` on HTTP 429 so that the
[retry policy](../configuration/retries.html) backs off correctly.
""",
)

API_SINKS = Page(
    "docs/api/sinks.html",
    "Sinks",
    "Python API",
    """
A sink writes records to a destination. Sinks support three write modes: `append`, `overwrite`
and `upsert`. Upserts need a key and are idempotent, which makes them the safest choice for
pipelines that may be retried or backfilled.

```python
from lumen.sinks import warehouse, parquet

warehouse("analytics.orders").upsert(rows, key="order_id")
parquet("s3://lake/orders/date={date}/part.parquet").overwrite(rows)
```

Sinks buffer records and write them in batches of `batch_size` (default 5,000). Call `flush()`
if a step needs the data to be visible before it returns. See [sources](sources.html) for the
reading side and [transforms](transforms.html) for what happens in between.
""",
)

API_TRANSFORMS = Page(
    "docs/api/transforms.html",
    "Transforms",
    "Python API",
    """
`lumen.transforms` contains small, composable helpers for common record manipulations. Each
transform is a plain function that takes and returns an iterable of records.

- `dedupe(rows, key)` keeps the last record for each key.
- `validate(rows, schema)` checks records against a JSON schema and routes invalid ones to a
  dead-letter sink.
- `batch(rows, size)` groups records into lists of `size`.
- `rename(rows, mapping)` renames fields.

```python
from lumen import transforms as t

clean = t.dedupe(t.rename(rows, {"OrderID": "order_id"}), key="order_id")
```
""",
)

CONCEPTS_INDEX = Page(
    "docs/concepts/index.html",
    "Concepts",
    "Concepts",
    """
This section explains the ideas behind Lumen. You do not need to read it before writing your
first pipeline, but it helps when you design pipelines for production.

- [Pipelines, steps and runs](pipelines.html): the building blocks.
- [Scheduling](scheduling.html): cron schedules, queues and concurrency.
- [State and checkpoints](state-and-checkpoints.html): how Lumen remembers progress.
- [Backfills](backfills.html): re-processing past periods safely.

A short [glossary](/glossary.html) defines the terms used throughout the documentation.
""",
)

CONCEPTS_PIPELINES = Page(
    "docs/concepts/pipelines.html",
    "Pipelines, steps and runs",
    "Concepts",
    """
A **pipeline** is a named directed acyclic graph of **steps**. A **run** is one execution of a
pipeline, with its own parameters, logs and outputs.

## Steps

A step is the unit of retry and checkpointing. Keep steps small enough that retrying one is
cheap, but large enough that the overhead of storing its output is negligible. A good rule of
thumb is that a step should take between a few seconds and a few minutes.

## The dependency graph

Lumen builds the graph from the calls at the end of the pipeline definition. Steps without a
dependency between them may run in parallel when the worker has spare capacity. Cycles are
rejected when the pipeline is loaded, with an error that names the steps involved.

## Runs

Each run has a state: `queued`, `running`, `succeeded`, `failed` or `cancelled`. Runs are
numbered per pipeline. The outputs of each step are stored in the state store for seven days by
default (`state.output_retention`), which is what makes `--resume` possible.

## Data lineage

Lumen records which steps read from and wrote to which tables. Lineage is covered in a
[separate page](../concepts/lineage.html).
""",
)

CONCEPTS_SCHEDULING = Page(
    "docs/concepts/scheduling.html",
    "Scheduling",
    "Concepts",
    """
The Lumen server evaluates schedules and puts runs on a queue; workers take runs from the queue
and execute them. In Lumen 2.0 the scheduler was rewritten on top of asyncio, which lets one
server handle tens of thousands of schedules; the [blog
post](/blog/why-we-rewrote-the-scheduler.html)
explains why.

## Schedule expressions

| Expression | Meaning |
|---|---|
| `0 * * * *` | Every hour, on the hour |
| `*/15 * * * *` | Every fifteen minutes |
| `30 2 * * 1-5` | 02:30 on weekdays |
| `@daily` | Midnight every day, in the server time zone |

Schedules are evaluated in the time zone given by `scheduler.timezone` (UTC by default). Daylight
saving transitions never produce duplicate or skipped runs: Lumen uses the wall-clock time of
the configured zone and deduplicates by scheduled time.

## Missed runs

If the server was down when a run was due, Lumen starts one catch-up run when it comes back,
not one per missed interval. Set `scheduler.catchup: all` to start every missed run instead, or
use a [backfill](backfills.html) for finer control.

## Concurrency

`max_concurrent_runs` limits parallel runs of one pipeline; `worker.concurrency` limits the
number of runs one worker executes at once.
""",
)

CONCEPTS_STATE = Page(
    "docs/concepts/state-and-checkpoints.html",
    "State and checkpoints",
    "Concepts",
    """
Lumen stores run history, step outputs and checkpoints in a **state store**. For a single machine
the bundled SQLite store is enough; when several workers share the load, use PostgreSQL.

## Checkpoints

A checkpoint is a small key-value map that a step can read and update through `ctx.checkpoint`.
Checkpoints are committed only when the step succeeds, so a failed attempt never moves a cursor
forward. Incremental loads rely on this: read the cursor, fetch newer records, and store the new
cursor after the write succeeds.

```python
@lumen.step
def fetch(ctx):
    cursor = ctx.checkpoint.get("updated_at", "1970-01-01T00:00:00Z")
    rows = list(api.fetch(updated_since=cursor))
    if rows:
        ctx.checkpoint.set("updated_at", max(r["updated_at"] for r in rows))
    return rows
```

## Resuming runs

`lumen run PIPELINE --resume` starts a new run that reuses the stored outputs of every step that
succeeded in the most recent failed run, and executes only the failed and downstream steps.

## Retention

| Setting | Default | Meaning |
|---|---|---|
| `state.output_retention` | `7d` | How long step outputs are kept |
| `state.run_retention` | `90d` | How long run history is kept |
| `state.vacuum_schedule` | `@daily` | When expired data is deleted |
""",
)

CONCEPTS_BACKFILLS = Page(
    "docs/concepts/backfills.html",
    "Backfills",
    "Concepts",
    """
A backfill runs a pipeline once for each period in a past date range, for example to load
historical data after adding a new pipeline or to re-process a week of data after fixing a bug.

```bash
lumen backfill hourly-orders --start 2024-03-01 --end 2024-03-08 --step 1d --parallel 3
```

Each backfill run receives its period in `ctx.params["start"]` and `ctx.params["end"]` and does
not touch checkpoints, so a backfill never disturbs the regular incremental schedule. Sinks should
use `upsert` so that re-processing a period replaces its data instead of duplicating it.
""",
)

TUTORIALS_INDEX = Page(
    "docs/tutorials/index.html",
    "Tutorials",
    "Tutorials",
    """
Tutorials are end-to-end walkthroughs. Each one starts from an empty directory and ends with a
working pipeline.

1. [Loading CSV files into PostgreSQL](csv-to-postgres.html): the classic ETL job, done properly.
2. [Incremental loads from an API](incremental-loads.html): cursors, checkpoints and late data.
3. [Testing pipelines](testing-pipelines.html): unit tests for steps and integration tests for runs.

If you have not installed Lumen yet, start with the [installation guide](../install/index.html).
""",
)

TUTORIAL_INCREMENTAL = Page(
    "docs/tutorials/incremental-loads.html",
    "Incremental loads from an API",
    "Tutorials",
    """
Reloading everything on every run is simple but slow and expensive. An incremental load fetches
only what changed since the previous run. This tutorial loads support tickets from a helpdesk API
that supports an `updated_since` filter.

## The cursor

We keep the largest `updated_at` value we have loaded in a checkpoint. Because checkpoints are
committed only after the step succeeds, a failed run simply repeats the same window next time.

```python
import lumen
from lumen.sources import HttpSource
from lumen.sinks import warehouse

tickets = HttpSource("https://helpdesk.internal/api/tickets", auth=lumen.secret("HELPDESK_TOKEN"))

with lumen.Pipeline("tickets", schedule="*/15 * * * *"):

    @lumen.step(retries=5)
    def load(ctx):
        cursor = ctx.checkpoint.get("cursor", "1970-01-01T00:00:00Z")
        rows = list(tickets.fetch(params={"updated_since": cursor}))
        warehouse("support.tickets").upsert(rows, key="id")
        if rows:
            ctx.checkpoint.set("cursor", max(r["updated_at"] for r in rows))

    load()
```

## Late-arriving data

Some APIs commit updates with a delay, so a record may appear with an `updated_at` older than the
cursor. Re-read a small overlap window on every run to catch it; the upsert makes the overlap
harmless:

```python
from datetime import datetime, timedelta

overlap = timedelta(minutes=10)
since = datetime.fromisoformat(cursor.replace("Z", "+00:00")) - overlap
```

## Recovering from mistakes

If you load bad data, fix the step and run a [backfill](../concepts/backfills.html) for the
affected period. To start over completely, reset the checkpoint with
`lumen checkpoint reset tickets load`.
""",
)

TUTORIAL_TESTING = Page(
    "docs/tutorials/testing-pipelines.html",
    "Testing pipelines",
    "Tutorials",
    """
Steps are plain functions, so most of a pipeline can be tested with ordinary unit tests. For
whole runs, `lumen.testing` provides an in-memory state store and fake sources.

## Unit-testing a step

```python
from pipelines.orders import clean

def test_clean_drops_rows_without_amount():
    rows = [{"amount": "12.5"}, {"amount": ""}]
    assert list(clean.fn(rows)) == [{"amount": 12.5}]
```

The undecorated function is available as `step.fn`, so the test does not need a run context.

## Testing a whole run

```python
from lumen.testing import fake_source, run_pipeline

def test_orders_pipeline(tmp_path):
    with fake_source("orders_api", [{"order_id": 1, "amount": 3}]):
        result = run_pipeline("orders", state_dir=tmp_path)
    assert result.succeeded
    assert result.outputs["load"] == 1
```

Run the tests with `pytest`. In CI, set `LUMEN_PROFILE=test` so that pipelines pick up test
settings, and make sure no real secrets are available to the job.
""",
)

DEPLOY_INDEX = Page(
    "docs/deployment/index.html",
    "Deploying Lumen",
    "Deployment",
    """
In production Lumen runs as two kinds of process: one **server**, which evaluates schedules,
serves the web UI on port 7070 and owns the queue, and one or more **workers**, which execute
runs. Both connect to a shared PostgreSQL state store.

## Deployment options

| Environment | Guide | Notes |
|---|---|---|
| Single Linux VM | [systemd](systemd.html) | Simplest; good up to a few hundred runs per hour |
| Kubernetes | [Kubernetes](kubernetes.html) | Helm chart, autoscaling workers |
| Docker Compose | [Docker](../install/docker.html) | Development and small teams |

## Checklist

1. Use PostgreSQL for the state store, never SQLite, when more than one process is involved.
2. Put secrets in a [secrets backend](../configuration/secrets.html).
3. Set up [monitoring](monitoring.html) and alerts for failed runs.
4. Back up the state store daily.
""",
)

DEPLOY_K8S = Page(
    "docs/deployment/kubernetes.html",
    "Deploying on Kubernetes",
    "Deployment",
    """
The `lumen` Helm chart deploys the server as a Deployment with one replica and the workers as a
Deployment that can be scaled by hand or with a HorizontalPodAutoscaler driven by queue length.

```bash
helm repo add lumen https://charts.lumen.dev
helm install lumen lumen/lumen \\
  --namespace data --create-namespace \\
  --set state.dsn=postgresql://lumen@pg.data.svc/lumen \\
  --set worker.replicas=3
```

## values.yaml

```yaml
server:
  resources:
    requests: {cpu: 250m, memory: 512Mi}
worker:
  replicas: 3
  concurrency: 4
  autoscaling:
    enabled: true
    minReplicas: 2
    maxReplicas: 20
    targetQueueLength: 10
secrets:
  backend: file
  existingSecret: lumen-secrets
```

Workers drain gracefully: on SIGTERM a worker stops taking new runs and waits up to
`worker.shutdown_timeout` (default 10 minutes) for current runs to finish, so set the pod's
`terminationGracePeriodSeconds` to at least that value.

See [monitoring](monitoring.html) for Prometheus scraping and dashboards.
""",
)

DEPLOY_SYSTEMD = Page(
    "docs/deployment/systemd.html",
    "Running Lumen under systemd",
    "Deployment",
    """
On a single Linux machine, run the server and workers as systemd services. The apt and rpm
packages install these units for you; if you installed with pip, create them yourself.

```ini
# /etc/systemd/system/lumen-server.service
[Unit]
Description=Lumen scheduler and web UI
After=network-online.target postgresql.service

[Service]
User=lumen
WorkingDirectory=/srv/lumen
EnvironmentFile=/etc/lumen/env
ExecStart=/opt/lumen/bin/lumen server --host 127.0.0.1 --port 7070
Restart=on-failure

[Install]
WantedBy=multi-user.target
```

Create `lumen-worker@.service` the same way with `ExecStart=/opt/lumen/bin/lumen worker`, then
start as many instances as you need:

```bash
sudo systemctl daemon-reload
sudo systemctl enable --now lumen-server lumen-worker@1 lumen-worker@2
journalctl -u lumen-server -f
```

For installation of the packages themselves, see [installing on Linux](../install/linux.html).
""",
)

DEPLOY_MONITORING = Page(
    "docs/deployment/monitoring.html",
    "Monitoring and alerting",
    "Deployment",
    """
The server and workers expose Prometheus metrics on `/metrics`. The most useful ones are:

| Metric | Type | Meaning |
|---|---|---|
| `lumen_runs_total{status}` | counter | Finished runs by final status |
| `lumen_run_duration_seconds` | histogram | Wall-clock duration of runs |
| `lumen_step_retries_total` | counter | Retry attempts, by pipeline and step |
| `lumen_queue_length` | gauge | Runs waiting for a worker |
| `lumen_worker_busy` | gauge | Runs currently executing on a worker |

A good first alert fires when `increase(lumen_runs_total{status="failed"}[1h]) > 0`, and a second
one when `lumen_queue_length` stays above the number of worker slots for fifteen minutes, which
means you need more workers.

Lumen can also send notifications directly. Configure `notifications.on_failure` with a Slack
webhook or an email address in `lumen.yaml`; see the [configuration
reference](../configuration/reference.html).
""",
)

PAGES: list[Page] = [
    API_INDEX,
    API_PIPELINE,
    API_SOURCES,
    API_SINKS,
    API_TRANSFORMS,
    CONCEPTS_INDEX,
    CONCEPTS_PIPELINES,
    CONCEPTS_SCHEDULING,
    CONCEPTS_STATE,
    CONCEPTS_BACKFILLS,
    TUTORIALS_INDEX,
    TUTORIAL_INCREMENTAL,
    TUTORIAL_TESTING,
    DEPLOY_INDEX,
    DEPLOY_K8S,
    DEPLOY_SYSTEMD,
    DEPLOY_MONITORING,
]
