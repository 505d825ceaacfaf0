"""Hand-written pages: long tutorial, performance guide, blog, project and legal pages."""

from __future__ import annotations

from demo_site.site import Page

TUTORIAL_CSV = Page(
    "docs/tutorials/csv-to-postgres.html",
    "Tutorial: loading CSV files into PostgreSQL",
    "Tutorials",
    """
In this tutorial you build a pipeline that picks up CSV exports dropped into a directory every
night, validates them, and loads them into a PostgreSQL table without ever creating duplicates.
Along the way you will use file sources, validation with a dead-letter sink, upserts, retries and
a schedule. Plan for about forty-five minutes.

## What you will build

A retailer's point-of-sale system writes one file per store per day, such as
`sales_store042_2024-05-01.csv`, into `/data/incoming`. Files sometimes arrive late, are
occasionally uploaded twice, and now and then contain malformed rows. The pipeline must:

1. Load every new file exactly once, even if the same file is uploaded again.
2. Reject malformed rows without failing the whole file, and keep them for inspection.
3. Retry when the database is briefly unavailable.
4. Run every night at 02:00 and be easy to re-run for a past day.

## Prerequisites

- Lumen 2.1 or newer, installed as described in the [installation guide](../install/index.html).
- A PostgreSQL 13+ database you can create tables in.
- Sample data: run `lumen examples fetch pos-sales` to download a week of example files.

## Step 1: create the project and table

```bash
lumen init pos-sales
cd pos-sales
psql "$SALES_DSN" -f sql/create_sales.sql
```

The table uses a natural key made of the store, the receipt number and the line number. The
primary key is what makes upserts, and therefore safe re-runs, possible.

```sql
CREATE TABLE IF NOT EXISTS sales (
    store_id     integer     NOT NULL,
    receipt_no   bigint      NOT NULL,
    line_no      smallint    NOT NULL,
    sold_at      timestamptz NOT NULL,
    sku          text        NOT NULL,
    quantity     integer     NOT NULL CHECK (quantity <> 0),
    unit_price   numeric(10, 2) NOT NULL,
    source_file  text        NOT NULL,
    PRIMARY KEY (store_id, receipt_no, line_no)
);
```

## Step 2: configure the project

Edit `lumen.yaml`. The database connection string comes from an environment variable, and
retries are tuned for a database that restarts during nightly maintenance: up to five attempts,
starting with a ten-second delay.

```yaml
version: 2
project: pos-sales
state:
  backend: sqlite
  path: .lumen/state.db
retries:
  max_attempts: 5
  backoff: exponential
  initial_delay: 10s
  max_delay: 2m
  retry_on:
    - psycopg.OperationalError
secrets:
  backend: env
```

## Step 3: list new files

The first step lists the incoming directory and returns the files that have not been loaded yet.
The set of loaded files is kept in a checkpoint, so it survives between runs and is only updated
after a successful load.

```python
import lumen
from pathlib import Path

INCOMING = Path("/data/incoming")

with lumen.Pipeline("pos-sales", schedule="0 2 * * *", timeout="1h") as p:

    @lumen.step
    def discover(ctx):
        loaded = set(ctx.checkpoint.get("loaded_files", []))
        files = sorted(str(f) for f in INCOMING.glob("sales_store*_*.csv"))
        new = [f for f in files if f not in loaded]
        ctx.logger.info("%d new files out of %d", len(new), len(files))
        return new
```

Why not move processed files into an archive directory instead? Moving files couples the
pipeline to the file system layout and makes re-runs awkward. Keeping the list in a checkpoint
means a backfill can simply ignore it.

## Step 4: parse and validate rows

The parse step reads each file with `lumen.read_csv`, converts types and validates every row
against a schema. Rows that fail validation are sent to a dead-letter sink, a Parquet file per
run, instead of failing the run. One bad row in ten thousand should not stop a whole store's
sales from being loaded.

```python
from lumen import transforms as t
from lumen.sinks import parquet

SCHEMA = {
    "type": "object",
    "required": ["store_id", "receipt_no", "line_no", "sold_at", "sku", "quantity"],
    "properties": {
        "quantity": {"type": "integer", "not": {"const": 0}},
        "unit_price": {"type": "number", "minimum": 0},
    },
}

    @lumen.step
    def parse(ctx, files):
        rows = []
        for path in files:
            for row in lumen.read_csv(path, types={"quantity": int, "unit_price": float}):
                row["source_file"] = Path(path).name
                rows.append(row)
        dead_letter = parquet(f"rejects/run={ctx.run_id}.parquet")
        return list(t.validate(rows, SCHEMA, rejects=dead_letter))
```

Note the indentation: `parse` is defined inside the same `with` block as `discover`, so it belongs
to the same pipeline. A step defined outside the block is not part of any pipeline and Lumen
reports it as unused when the project is loaded.

## Step 5: load with an upsert

The load step writes the rows with an upsert on the primary key. If a file is uploaded twice, or
the run is retried after a partial write, the second write replaces identical rows instead of
duplicating them. After the write succeeds, the step records the files as loaded.

```python
from lumen.sinks import postgres

    @lumen.step
    def load(ctx, files, rows):
        sink = postgres(lumen.secret("SALES_DSN"), table="sales")
        sink.upsert(rows, key=["store_id", "receipt_no", "line_no"])
        loaded = set(ctx.checkpoint.get("loaded_files", []))
        ctx.checkpoint.set("loaded_files", sorted(loaded | set(files)))
        return len(rows)

    new_files = discover()
    load(new_files, parse(new_files))
```

## Step 6: run it

Export the connection string and run the pipeline by hand once:

```bash
export SALES_DSN=postgresql://etl@localhost/retail
lumen run pos-sales
```

The output shows the three steps, how many files were discovered and how many rows were loaded
and rejected. Run the same command again: `discover` finds no new files and the run finishes in
well under a second. Check the table with `SELECT count(*) FROM sales;` to confirm that nothing
was loaded twice.

## Step 7: simulate a database outage

Stop PostgreSQL, copy a new sample file into the incoming directory and run the pipeline again.
The `load` step fails with `OperationalError`, and Lumen retries it after 10, 20, 40 and 80
seconds. Start PostgreSQL again during that window and the run completes on the next attempt. If
all five attempts fail, the run is marked as failed, the checkpoint is not updated, and the next
scheduled run picks the file up again. You can also continue immediately with
`lumen run pos-sales --resume`, which reuses the outputs of `discover` and `parse`.

## Step 8: inspect rejected rows

Rejected rows land in `rejects/run=<id>.parquet` together with the validation error. A quick
look with DuckDB is often enough to see what went wrong:

```bash
duckdb -c "SELECT source_file, error, count(*) FROM 'rejects/*.parquet' GROUP BY ALL"
```

Typical problems are a quantity of zero (cancelled lines that the till exports anyway) and a
missing SKU for gift-card sales. Fix the source or relax the schema, then re-load the affected
day with a backfill.

## Step 9: schedule it and re-run a past day

Start the server with `lumen server` (or install it as a service, see
[running under systemd](../deployment/systemd.html)) and the pipeline runs every night at 02:00.
To re-process a specific day, pass a parameter that makes `discover` ignore the checkpoint and
select that day's files:

```bash
lumen backfill pos-sales --start 2024-05-01 --end 2024-05-02 --step 1d
```

## Summary

You built a pipeline that loads files exactly once, quarantines bad rows, survives database
restarts and can be re-run safely. The same pattern, a cursor in a checkpoint plus an idempotent
upsert, works for almost every source. Continue with [incremental loads from an
API](incremental-loads.html)
or read about [state and checkpoints](/docs/concepts/state-and-checkpoints.html) in depth.
""",
)

PERFORMANCE = Page(
    "docs/troubleshooting/performance.html",
    "Troubleshooting slow pipelines",
    "Troubleshooting",
    """
When a pipeline is slower than expected, find out where the time goes before changing anything.
`lumen runs show RUN_ID --timings` prints the wall-clock time, CPU time and record count of every
step.

## Common causes

| Symptom | Likely cause | Fix |
|---|---|---|
| One slow step, low CPU | Waiting on an API or database | Raise `page_size`; use `lumen.map` |
| High memory, worker killed | A step builds a huge list | Yield records instead of a list |
| Runs queue up | Too few worker slots | Raise `worker.concurrency` |
| Every run reads everything | No cursor | [Checkpoints](../concepts/state-and-checkpoints.html) |
| Sink writes are slow | Row-by-row inserts | Raise `batch_size` or use `COPY` mode |

## Parallelising a step

`lumen.map` runs a function over items with a bounded thread pool, which is ideal for I/O-bound
work such as calling an API once per customer:

```python
@lumen.step
def fetch_invoices(customers):
    return lumen.map(api.invoices_for, customers, max_workers=8)
```

Keep `max_workers` modest. Many APIs rate-limit aggressive clients, and the resulting HTTP 429
responses trigger [retries](../configuration/retries.html) that make the run slower overall.
""",
)

BLOG_INDEX = Page(
    "blog/index.html",
    "Lumen blog",
    "Blog",
    """
News, release announcements and engineering stories from the Lumen team.

- [Community update: March](community-update-march.html): contributors, meetups and what is next.
- [Case study: how Acme Logistics runs 4,000 pipelines on Lumen](case-study-acme-logistics.html)
- [Why we rewrote the scheduler](why-we-rewrote-the-scheduler.html): the story behind Lumen
  2.0's async core.
- [Announcing Lumen 2.0](announcing-lumen-2-0.html)
- [Lumen 1.8 released](lumen-1-8-released.html)
- [A first look at Lumen 3.0](lumen-3-0-preview.html)

Subscribe to release announcements by watching the project, or read the [changelog](/changelog.html)
for every detail.
""",
)

BLOG_2_0 = Page(
    "blog/announcing-lumen-2-0.html",
    "Announcing Lumen 2.0",
    "Blog",
    """
Today we are releasing Lumen 2.0, the biggest release since the project started. It brings a new
scheduler, a simpler Python API, safer defaults and a cleaner configuration format. Here is what
changed and why.

## A scheduler that scales

The 1.x scheduler polled the database once per schedule per tick. That was fine for a hundred
pipelines and painful for ten thousand. The new scheduler is event-driven and built on asyncio;
a single server now handles more than 50,000 schedules with under 5% CPU. The
[engineering story](why-we-rewrote-the-scheduler.html) has the details.

## Steps are functions

Instead of subclassing `lumen.Task`, you now decorate a function with `@lumen.step`. Dependencies
are inferred from how steps are called, so a pipeline reads like ordinary Python.

## Checkpoints on by default

Every step output is now checkpointed, and `lumen run --resume` continues a failed run from the
failed step. In 1.x this required opting in per pipeline.

## Configuration version 2

Retries moved from per-step `retry:` blocks to a project-wide `retries:` block with per-step
overrides, and settings gained consistent names. `lumen migrate-config` converts old files.

## Breaking changes

Python 3.7 and 3.8 are no longer supported, `lumen exec` is deprecated in favour of `lumen run`,
and the `lumen.legacy` module is gone. Read the [upgrade guide](/docs/install/upgrading.html)
before upgrading production systems.

Thank you to the 140 contributors who made this release possible.
""",
)

BLOG_SCHEDULER = Page(
    "blog/why-we-rewrote-the-scheduler.html",
    "Why we rewrote the scheduler",
    "Blog",
    """
Rewrites are usually a mistake. This post explains why we did one anyway, and what we learned.

## The problem

Lumen 1.x evaluated schedules in a loop: every second, for every pipeline, it computed the next
fire time and compared it with the clock. With 12,000 pipelines at our largest users, a single
tick took longer than a second, so runs started late and the delay grew through the day. Adding
servers did not help, because they fought over the same rows in the state store.

## The new design

The 2.0 scheduler keeps a priority queue of the next fire time of every schedule in memory and
sleeps until the earliest one. When a schedule fires, it enqueues a run and pushes the following
fire time back onto the queue. Changes to schedules arrive as notifications from the state store
(PostgreSQL `LISTEN/NOTIFY`), so there is no polling at all.

```python
async def scheduler_loop(queue, store):
    while True:
        fire_at, schedule = queue.peek()
        await sleep_until(fire_at)
        await store.enqueue_run(schedule.pipeline, scheduled_for=fire_at)
        queue.replace(schedule.next_fire_time(after=fire_at), schedule)
```

## Results

Start latency at the 99th percentile dropped from 41 seconds to 180 milliseconds, and CPU usage
of the server dropped by a factor of twenty. Leader election through an advisory lock means a
standby server takes over within five seconds if the active one dies.

## What we would do differently

We underestimated daylight-saving transitions: three of the first five bug reports after 2.0.0
were about schedules in zones that changed clocks. Version 2.0.2 fixed them; see the
[changelog](/changelog.html) and the documentation on
[scheduling](../docs/concepts/scheduling.html).
""",
)

BLOG_1_8 = Page(
    "blog/lumen-1-8-released.html",
    "Lumen 1.8 released",
    "Blog",
    """
Lumen 1.8 is out. It adds the `lumen doctor` command, which checks your installation and state
store, support for Python 3.11, and a faster SQLite state store. It is also the last 1.x feature
release: from now on, 1.x only receives security fixes until the end of the year. Plan your
move to 2.0 with the [upgrade guide](/docs/install/upgrading.html).
""",
)

BLOG_ACME = Page(
    "blog/case-study-acme-logistics.html",
    "Case study: how Acme Logistics runs 4,000 pipelines on Lumen",
    "Blog",
    """
Acme Logistics moves freight across twelve countries. Its data platform team of five engineers
runs about 4,000 Lumen pipelines that load tracking events, invoices and warehouse scans into a
central warehouse. We talked to their lead engineer about how they got there.

## From cron to Lumen

Before Lumen, Acme ran several hundred cron jobs on three servers. Nobody knew which jobs
depended on which, failures were noticed by analysts the next morning, and re-running a day meant
editing scripts by hand. The team moved pipelines over one department at a time over six months.

## What made the difference

- **Retries with backoff** removed most night-time pages: carrier APIs fail often but briefly.
- **Checkpoints and upserts** made re-runs safe, so on-call engineers simply press "resume".
- **Backfills** replaced hand-edited scripts for re-processing historical data.

## Their setup

Acme runs Lumen on Kubernetes with the Helm chart, between 6 and 40 worker pods depending on the
queue length, and a managed PostgreSQL instance as the state store. Alerts go to Slack through
`notifications.on_failure`. Their advice to new users: keep steps small, make every sink an
upsert, and put every credential in a secrets backend from day one.

Read how to set up a similar deployment in [deploying on
Kubernetes](/docs/deployment/kubernetes.html).
""",
)

BLOG_COMMUNITY = Page(
    "blog/community-update-march.html",
    "Community update: March",
    "Blog",
    """
March brought 38 merged pull requests from 21 contributors, including nine first-time
contributors. Highlights: a MySQL source with incremental cursors, better Windows path handling,
and a Japanese translation of the quickstart. The next community call is on the first Thursday
of the month. Maintainers can find the agenda and the draft roadmap on the
[internal roadmap page](/private/roadmap-draft.html).
""",
)

ABOUT = Page(
    "about.html",
    "About Lumen",
    "Getting started",
    """
Lumen started in 2019 as an internal tool at a small analytics consultancy and was released as
open source a year later. Today it is maintained by Lumen Labs together with an active community
of contributors, and it is used by teams ranging from two-person startups to large logistics
companies.

## Privacy

This documentation site uses a cookie to remember whether you accepted the cookie banner and
anonymous analytics to see which pages are read most. We do not sell or share this data.

Lumen Labs is a member of an open-source foundation; read more at
[example.org](https://example.org/).
""",
)

SUPPORT = Page(
    "support.html",
    "Getting help",
    "Getting started",
    """
Stuck? Start with the [troubleshooting guide](/docs/troubleshooting/index.html) and the
[FAQ](faq.html). If that does not help, ask in the community forum, where maintainers answer most
questions within a day. Commercial support with guaranteed response times is available from
Lumen Labs. To report a security problem, follow the [security policy](security.html) instead of
opening a public issue.
""",
)

LICENSE = Page(
    "license.html",
    "License",
    "Getting started",
    """
Lumen is released under the Apache License, Version 2.0. You may use, modify and distribute it,
including in commercial products, provided that you keep the license and copyright notices. The
documentation on this site is licensed under Creative Commons Attribution 4.0. Third-party
components bundled with the Windows installer and the static binaries are listed, with their
licenses, in the `THIRD_PARTY_NOTICES` file of each download.
""",
)

SECURITY = Page(
    "security.html",
    "Security policy",
    "Getting started",
    """
Please report vulnerabilities privately to the security team rather than in public issues. We
acknowledge reports within two working days and aim to release a fix within thirty days. The
latest minor release of the current major version receives security fixes; Lumen 1.x received
its final security fix in version 1.8.4.
""",
)

GLOSSARY = Page(
    "glossary.html",
    "Glossary",
    "Concepts",
    """
| Term | Definition |
|---|---|
| Backfill | Running a pipeline for a range of past periods |
| Checkpoint | A small key-value map committed when a step succeeds, used as a cursor |
| Pipeline | A named graph of steps that can be run and scheduled |
| Run | One execution of a pipeline |
| Server | The process that evaluates schedules and serves the web UI |
| Sink | A destination that records are written to |
| Source | A system that records are read from |
| State store | The database holding runs, outputs and checkpoints |
| Step | A function in a pipeline; the unit of retry |
| Worker | A process that executes runs taken from the queue |

Each concept is explained in more depth in the [concepts section](docs/concepts/index.html).
""",
)

PRIVATE_ROADMAP = Page(
    "private/roadmap-draft.html",
    "Roadmap draft (internal)",
    "Blog",
    """
Internal draft, not for publication. Candidate themes for Lumen 3.0: column-level lineage,
streaming sources, removal of the deprecated `lumen exec` alias, and a hosted control plane.
Dates are not committed. Do not share this page outside the maintainer group.
""",
)

PAGES: list[Page] = [
    TUTORIAL_CSV,
    PERFORMANCE,
    BLOG_INDEX,
    BLOG_2_0,
    BLOG_SCHEDULER,
    BLOG_1_8,
    BLOG_ACME,
    BLOG_COMMUNITY,
    ABOUT,
    SUPPORT,
    LICENSE,
    SECURITY,
    GLOSSARY,
    PRIVATE_ROADMAP,
]
