"""Hand-written pages: home, docs overview, getting started, installation and configuration."""

from __future__ import annotations

from demo_site.site import Page

HOME = Page(
    "index.html",
    "Lumen: reliable data pipelines in plain Python",
    "Getting started",
    """
Lumen is an open-source data-pipeline tool for teams that want dependable batch and incremental
loads without running a heavyweight orchestration platform. You describe a pipeline as a small
set of sources, transforms and sinks in Python or YAML, and Lumen takes care of scheduling,
retries, checkpoints and backfills. The current stable release is **Lumen 2.1.2**.

## Why teams choose Lumen

- **Plain Python.** A pipeline step is an ordinary function decorated with `@lumen.step`.
- **Safe by default.** Every run is checkpointed, so a failed run resumes where it stopped.
- **Retries that make sense.** Exponential backoff with jitter is built in; see [configuring
  retries](docs/configuration/retries.html).
- **Runs anywhere.** Linux, macOS, Windows, Docker and Kubernetes are all supported.

## Where to start

1. Follow the [quickstart](docs/getting-started/quickstart.html) to build a pipeline in ten minutes.
2. Read the [installation guide](/docs/install/index.html) for your operating system.
3. Browse the [configuration reference](/docs/configuration/reference.html) and the [CLI
  reference](docs/cli/index.html).
4. Learn the [core concepts](docs/concepts/index.html) behind runs, schedules and checkpoints.

## What is new in 2.0

Lumen 2.0 introduced a rewritten asynchronous scheduler, version 2 of the configuration file
format and a new decorator-based Python API. If you are coming from 1.x, read the
[upgrade guide](docs/install/upgrading.html) and the [release
announcement](blog/announcing-lumen-2-0.html).
The full list of changes is in the [changelog](changelog.html).

Lumen is developed in the open by Lumen Labs and a community of contributors. Learn more
[about the project](about.html) or visit our partner site at [example.org](https://example.org/).
""",
)

DOCS_INDEX = Page(
    "docs/index.html",
    "Lumen documentation",
    "Getting started",
    """
Welcome to the Lumen documentation. These pages cover everything from installing Lumen on your
laptop to running it in production on Kubernetes. The documentation is organised by the kind of
question you have.

## Learn

- [Getting started](getting-started/index.html): what Lumen is and a ten-minute quickstart.
- [Tutorials](tutorials/index.html): longer, end-to-end walkthroughs of realistic pipelines.
- [Concepts](concepts/index.html): pipelines, runs, schedules, checkpoints and backfills explained.

## Set up

- [Installation](install/index.html) on Linux, macOS, Windows and Docker.
- [Configuration](configuration/index.html), including the full
  [reference](configuration/reference.html).
- [Deployment](deployment/index.html) with systemd or Kubernetes, plus monitoring.

## Look things up

- [CLI reference](cli/index.html) for every `lumen` command and flag.
- [Python API](api/index.html) for the `lumen` package.
- [Troubleshooting](troubleshooting/index.html) for common errors and how to fix them.
- [Frequently asked questions](/faq.html).

> The documentation always describes the latest stable release. Documentation for Lumen 1.x is
> no longer maintained; see the [upgrade guide](install/upgrading.html) to move to 2.x.
""",
)

GETTING_STARTED = Page(
    "docs/getting-started/index.html",
    "Getting started with Lumen",
    "Getting started",
    """
This section introduces Lumen and walks you through your first pipeline. If you have never used
a pipeline tool before, start here; if you already know Airflow or cron-based ETL, skim the
overview and jump to the [quickstart](quickstart.html).

## What Lumen does

A Lumen **pipeline** moves data from one or more **sources** (files, databases, HTTP APIs) through
a series of **transforms** into one or more **sinks** (a warehouse table, a Parquet file, a search
index). Lumen runs the pipeline on a schedule or on demand, records what happened in its state
store and retries steps that fail for transient reasons.

## What you need

- Python 3.9 or newer (Lumen 2.x no longer supports 3.7 or 3.8).
- About 200 MB of free disk space for Lumen and its dependencies.
- Optionally, PostgreSQL 13+ if you want a shared state store for several workers.

## In this section

1. [Quickstart](quickstart.html): install Lumen and run a pipeline in ten minutes.
2. [Your first real pipeline](first-pipeline.html): sources, transforms, sinks and a schedule.

When you are done, continue with the [tutorials](/docs/tutorials/index.html) or read about the
[concepts](../concepts/index.html) behind Lumen.
""",
)

QUICKSTART = Page(
    "docs/getting-started/quickstart.html",
    "Quickstart: your first pipeline in ten minutes",
    "Getting started",
    """
This quickstart installs Lumen, creates a new project, runs a tiny pipeline that reads a CSV file
and writes a cleaned copy, and shows you where to look when something goes wrong. It assumes
you have Python 3.9 or newer and a terminal.

## Step 1: install Lumen

The quickest way to install Lumen on any operating system is with pip inside a virtual
environment. Platform-specific options such as Homebrew, apt or the Windows installer are
described in the [installation guide](../install/index.html).

```bash
python -m venv .venv
source .venv/bin/activate        # on Windows: .venv\\Scripts\\activate
pip install lumen-pipelines
lumen --version
```

The last command should print `lumen 2.1.2`. If the `lumen` command is not found, your virtual
environment is probably not active; see
[troubleshooting](../troubleshooting/index.html#command-not-found).

## Step 2: create a project

`lumen init` creates a project directory with a configuration file, an example pipeline and a
local state store.

```bash
lumen init orders-demo
cd orders-demo
ls
# lumen.yaml  pipelines/  data/  .lumen/
```

The `lumen.yaml` file holds project-wide settings. The generated file is short:

```yaml
version: 2
project: orders-demo
state:
  backend: sqlite
  path: .lumen/state.db
retries:
  max_attempts: 3
  backoff: exponential
  initial_delay: 2s
```

## Step 3: write a pipeline

Open `pipelines/orders.py` and replace its contents with the following. Indentation matters:
the steps are nested inside the `with` block that defines the pipeline.

```python
import lumen

with lumen.Pipeline("orders") as p:

    @lumen.step
    def extract():
        return lumen.read_csv("data/orders.csv")

    @lumen.step
    def clean(rows):
        for row in rows:
            if row["amount"]:
                row["amount"] = float(row["amount"])
                yield row

    @lumen.step
    def load(rows):
        lumen.write_parquet(rows, "data/orders_clean.parquet")

    load(clean(extract()))
```

## Step 4: run it

```bash
lumen run orders
```

Lumen prints one line per step with its duration and the number of records it produced. A
successful run ends with `run 1 succeeded in 0.8s`. Run `lumen runs list` to see the history,
and `lumen runs show 1` to see the details of a single run.

## Step 5: break it on purpose

Delete `data/orders.csv` and run the pipeline again. The `extract` step fails, Lumen retries it
three times with exponential backoff (2, 4 and 8 seconds) and then marks the run as failed.
Restore the file and run `lumen run orders --resume`: Lumen resumes from the last checkpoint
instead of starting from scratch.

## Next steps

- Build something more realistic in [your first real pipeline](first-pipeline.html).
- Learn how [retries](/docs/configuration/retries.html) and
  [checkpoints](/docs/concepts/state-and-checkpoints.html) work.
- Put the pipeline on a [schedule](../concepts/scheduling.html).
""",
)

FIRST_PIPELINE = Page(
    "docs/getting-started/first-pipeline.html",
    "Your first real pipeline",
    "Getting started",
    """
The [quickstart](quickstart.html) pipeline reads one file and writes another. Real pipelines talk
to databases and APIs, run on a schedule and must cope with partial failures. This page builds a
pipeline that pulls orders from an HTTP API every hour, enriches them with customer data from
PostgreSQL and loads the result into a warehouse table.

## Declaring sources

Sources are declared once and reused by steps. Credentials never appear in code: they come from
environment variables or a secrets backend, as described in [managing
secrets](../configuration/secrets.html).

```python
import lumen
from lumen.sources import HttpSource, PostgresSource

orders_api = HttpSource(
    "https://api.shop.internal/v1/orders",
    auth=lumen.secret("SHOP_API_TOKEN"),
    page_size=500,
)
customers_db = PostgresSource(dsn=lumen.secret("CUSTOMERS_DSN"))
```

## Writing steps

Each step receives the output of the steps it depends on. Lumen infers the dependency graph from
the function calls at the bottom of the pipeline, so you never list dependencies twice.

```python
with lumen.Pipeline("hourly-orders", schedule="0 * * * *") as p:

    @lumen.step(retries=5)
    def fetch_orders(ctx):
        since = ctx.checkpoint.get("last_order_id", 0)
        return orders_api.fetch(params={"after_id": since})

    @lumen.step
    def enrich(orders):
        ids = {o["customer_id"] for o in orders}
        customers = customers_db.query(
            "SELECT id, name, country FROM customers WHERE id = ANY(%s)", [list(ids)]
        )
        by_id = {c["id"]: c for c in customers}
        for order in orders:
            order["customer"] = by_id.get(order["customer_id"])
        return orders

    @lumen.step
    def load(ctx, orders):
        lumen.sinks.warehouse("analytics.orders").upsert(orders, key="order_id")
        if orders:
            ctx.checkpoint.set("last_order_id", max(o["order_id"] for o in orders))

    load(enrich(fetch_orders()))
```

## Scheduling

The `schedule` argument accepts a cron expression. Start the scheduler with `lumen server` and the
pipeline runs at the top of every hour. Runs that overlap are queued rather than run in parallel
unless you set `max_concurrent_runs`. See [scheduling](../concepts/scheduling.html) for details.

## What happens on failure

`fetch_orders` asks for five attempts instead of the project default of three, because the shop
API occasionally returns HTTP 503 during deployments. The checkpoint is only advanced after a
successful load, so a failed run never skips orders. To re-process a past period, use a
[backfill](../concepts/backfills.html).
""",
)

INSTALL_INDEX = Page(
    "docs/install/index.html",
    "Installing Lumen",
    "Installation",
    """
Lumen is distributed as a Python package (`lumen-pipelines` on PyPI), as native packages for
Linux and macOS, as a Windows installer and as a Docker image. All distributions contain the same
`lumen` command-line tool and Python library.

## System requirements

| Requirement | Minimum | Recommended |
|---|---|---|
| Python | 3.9 | 3.11 or 3.12 |
| Memory | 512 MB | 2 GB per worker |
| Disk | 200 MB | 1 GB plus room for logs |
| State store | SQLite (bundled) | PostgreSQL 13+ |

## Choose your platform

- [Installing on Linux](linux.html) with pip, the apt/yum repositories or a static binary.
- [Installing on macOS](macos.html) with Homebrew or pip.
- [Installing on Windows](windows.html) with the MSI installer, winget or pip.
- [Running Lumen in Docker](docker.html) with the official image.
- [Installing on FreeBSD](freebsd.html) (community-maintained port).

## Verifying the installation

Whatever method you choose, check that the command-line tool works and reports the expected
version:

```bash
lumen --version
lumen doctor
```

`lumen doctor` checks your Python version, the state store connection and the permissions of the
log directory, and prints a short report. If any check fails it links to the relevant
[troubleshooting](../troubleshooting/index.html) entry.

Upgrading from Lumen 1.x? Read [upgrading to 2.0](upgrading.html) first, because the
configuration file format changed.
""",
)

INSTALL_LINUX = Page(
    "docs/install/linux.html",
    "Installing on Linux",
    "Installation",
    """
Lumen supports any 64-bit Linux distribution with glibc 2.28 or newer, which includes Ubuntu
20.04+, Debian 11+, RHEL/Rocky/Alma 8+ and Fedora 36+. Alpine Linux is supported through the
[Docker image](docker.html) only, because the native wheels are not built for musl.

## Option 1: pip (recommended)

Installing with pip into a virtual environment keeps Lumen isolated from the system Python and
works on every distribution.

```bash
sudo apt install python3-venv        # Debian/Ubuntu only, if venv is missing
python3 -m venv ~/.venvs/lumen
source ~/.venvs/lumen/bin/activate
pip install --upgrade pip
pip install lumen-pipelines
```

To make the `lumen` command available without activating the environment, add a symlink:

```bash
mkdir -p ~/.local/bin
ln -s ~/.venvs/lumen/bin/lumen ~/.local/bin/lumen
```

## Option 2: apt repository (Debian and Ubuntu)

The apt package installs Lumen under `/opt/lumen` together with a systemd unit for the server.

```bash
curl -fsSL https://packages.lumen.dev/gpg.key | sudo gpg --dearmor -o /usr/share/keyrings/lumen.gpg
echo "deb [signed-by=/usr/share/keyrings/lumen.gpg] https://packages.lumen.dev/apt stable main" \\
    | sudo tee /etc/apt/sources.list.d/lumen.list
sudo apt update
sudo apt install lumen
```

## Option 3: yum/dnf repository (RHEL, Rocky, Fedora)

```bash
sudo dnf config-manager --add-repo https://packages.lumen.dev/rpm/lumen.repo
sudo dnf install lumen
```

## Option 4: static binary

For machines without Python, download the self-contained binary. It bundles its own Python
interpreter, so custom steps can only import the libraries that ship with it.

```bash
curl -LO https://downloads.lumen.dev/2.1.2/lumen-linux-x86_64.tar.gz
tar xzf lumen-linux-x86_64.tar.gz
sudo install -m 0755 lumen /usr/local/bin/lumen
```

## After installing

Run `lumen doctor` to verify the installation. To run the scheduler as a service, continue with
[running Lumen under systemd](../deployment/systemd.html). If the `lumen` command is not found,
see [command not found](/docs/troubleshooting/index.html#command-not-found).
""",
)

INSTALL_MACOS = Page(
    "docs/install/macos.html",
    "Installing on macOS",
    "Installation",
    """
Lumen runs on macOS 12 (Monterey) and newer, on both Apple silicon and Intel Macs.

## Homebrew

Homebrew is the easiest way to install and upgrade Lumen on macOS:

```bash
brew install lumen
lumen --version
```

Upgrade later with `brew upgrade lumen`. Homebrew installs Lumen with its own Python, so custom
steps that import third-party libraries need those libraries installed with
`$(brew --prefix lumen)/libexec/bin/pip install <package>`.

## pip

If you prefer to manage Python yourself, install Lumen into a virtual environment. Use the
Python from python.org or from `pyenv` rather than the one bundled with the Xcode command line
tools, which is too old.

```bash
python3 -m venv ~/.venvs/lumen
source ~/.venvs/lumen/bin/activate
pip install lumen-pipelines
```

## Apple silicon notes

All Lumen wheels are universal2 builds. If you use the PostgreSQL state store, install `libpq`
with Homebrew first (`brew install libpq`), otherwise `psycopg` falls back to a slow pure-Python
driver. See [Installing on Linux](linux.html) for the equivalent notes on Linux servers, and the
[configuration guide](../configuration/index.html) to point Lumen at your state store.
""",
)

INSTALL_WINDOWS = Page(
    "docs/install/windows.html",
    "Installing on Windows",
    "Installation",
    """
Lumen supports Windows 10 (version 1909 or newer), Windows 11 and Windows Server 2019 and 2022.
There are three ways to install Lumen on Windows: the MSI installer, winget, or pip. All three
give you the same `lumen` command.

## Option 1: the MSI installer

Download `lumen-2.1.2-x64.msi` from the downloads page and double-click it. The installer bundles
Python, adds `lumen` to your `PATH` and optionally registers the Lumen server as a Windows
service. Close and reopen any terminal window afterwards so that the new `PATH` takes effect.

For unattended installs, run the installer from an elevated PowerShell prompt:

```powershell
msiexec /i lumen-2.1.2-x64.msi /qn INSTALL_SERVICE=1 SERVICE_ACCOUNT="NT AUTHORITY\\NetworkService"
```

## Option 2: winget

```powershell
winget install --id LumenLabs.Lumen --exact
lumen --version
```

## Option 3: pip

If you already use Python on Windows, install Lumen into a virtual environment:

```powershell
py -3.11 -m venv $env:USERPROFILE\\lumen-venv
& $env:USERPROFILE\\lumen-venv\\Scripts\\Activate.ps1
pip install lumen-pipelines
```

If PowerShell refuses to run `Activate.ps1`, allow local scripts for your user first:
`Set-ExecutionPolicy -Scope CurrentUser RemoteSigned`.

## Windows-specific behaviour

| Topic | Behaviour on Windows |
|---|---|
| Configuration file | `%APPDATA%\\Lumen\\lumen.yaml` is read after the project file |
| Logs | `%LOCALAPPDATA%\\Lumen\\logs` |
| Service | `LumenServer`, managed with `sc.exe` or the Services console |
| Paths in YAML | Use forward slashes or quote backslashes: `'C:\\data\\in'` |

Long paths can break deeply nested projects. If you see `FileNotFoundError` for a path that
exists, enable long path support in the registry or with Group Policy, as explained in
[troubleshooting](../troubleshooting/index.html#windows-long-paths).

## Next steps

Continue with the [quickstart](../getting-started/quickstart.html). Note that in the quickstart the
virtual environment is activated with `.venv\\Scripts\\activate` on Windows.
""",
)

INSTALL_DOCKER = Page(
    "docs/install/docker.html",
    "Running Lumen in Docker",
    "Installation",
    """
The official image `ghcr.io/lumen-labs/lumen` is published for `linux/amd64` and `linux/arm64`.
Tags follow the release version (`2.1.2`, `2.1`, `2`) plus `latest`.

```bash
docker run --rm -v "$PWD:/project" -w /project ghcr.io/lumen-labs/lumen:2.1 lumen run orders
```

To run the scheduler and a worker together, use Docker Compose:

```yaml
services:
  server:
    image: ghcr.io/lumen-labs/lumen:2.1
    command: lumen server --host 0.0.0.0
    ports: ["7070:7070"]
    environment:
      LUMEN_STATE__BACKEND: postgres
      LUMEN_STATE__DSN: postgresql://lumen:lumen@db/lumen
    volumes: ["./:/project"]
  worker:
    image: ghcr.io/lumen-labs/lumen:2.1
    command: lumen worker --concurrency 4
    environment:
      LUMEN_STATE__BACKEND: postgres
      LUMEN_STATE__DSN: postgresql://lumen:lumen@db/lumen
    volumes: ["./:/project"]
  db:
    image: postgres:16
    environment:
      POSTGRES_USER: lumen
      POSTGRES_PASSWORD: lumen
```

To add Python libraries that your steps need, build a small image on top of the official one:

```dockerfile
FROM ghcr.io/lumen-labs/lumen:2.1
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
```

For production clusters, see [deploying on Kubernetes](../deployment/kubernetes.html).
""",
)

INSTALL_UPGRADING = Page(
    "docs/install/upgrading.html",
    "Upgrading from Lumen 1.x to 2.0",
    "Installation",
    """
Lumen 2.0 is a major release with breaking changes. Most projects upgrade in under an hour. This
guide lists what changed and how to migrate; the complete list is in the
[changelog](/changelog.html).

## Before you upgrade

1. Finish or cancel all running runs: the 2.0 state store schema is not readable by 1.x workers.
2. Back up the state store (`lumen state export > state-backup.json` in 1.x).
3. Make sure you run Python 3.9 or newer. Python 3.7 and 3.8 support was removed in 2.0.

## Configuration file version 2

The configuration file now starts with `version: 2`. Per-step `retry:` blocks were replaced by a
project-wide `retries:` block that steps can override. The `lumen migrate-config` command
rewrites a 1.x file for you:

```bash
lumen migrate-config lumen.yaml --write
```

| 1.x setting | 2.0 setting |
|---|---|
| `retry.count` | `retries.max_attempts` |
| `retry.delay` | `retries.initial_delay` |
| `retry.exponential: true` | `retries.backoff: exponential` |
| `store.url` | `state.dsn` |
| `workers` | `worker.concurrency` |

## Command-line changes

`lumen exec` was renamed to `lumen run`; the old name still works in 2.0 but prints a deprecation
warning and will be removed in 3.0. `lumen schedule start` became `lumen server`.

## Python API changes

Steps are now declared with the `@lumen.step` decorator instead of subclassing `lumen.Task`. The
`lumen.legacy` module, deprecated since 1.6, was removed.

```python
# Lumen 1.x
class Extract(lumen.Task):
    def run(self):
        return read_rows()

# Lumen 2.0
@lumen.step
def extract():
    return read_rows()
```

## After the upgrade

Run `lumen state migrate` once to upgrade the state store schema, then `lumen doctor`. If a run
fails with `StateSchemaError`, see
[troubleshooting](../troubleshooting/index.html#stateschemaerror).
""",
)

CONFIG_INDEX = Page(
    "docs/configuration/index.html",
    "Configuring Lumen",
    "Configuration",
    """
Lumen reads its settings from a YAML file, from environment variables and from command-line flags.
This page explains where settings come from and how they are combined. Every individual option is
documented in the [configuration reference](reference.html).

## The configuration file

By default Lumen looks for `lumen.yaml` in the current directory and its parents, stopping at the
first one it finds. Use `--config PATH` or the `LUMEN_CONFIG` environment variable to point at a
different file. A minimal file looks like this:

```yaml
version: 2
project: analytics
state:
  backend: postgres
  dsn: ${LUMEN_STATE_DSN}
retries:
  max_attempts: 4
  backoff: exponential
logging:
  level: info
  format: json
```

## Precedence

When the same option is set in several places, the most specific one wins:

1. Command-line flags, such as `lumen run --max-attempts 1`.
2. Environment variables, such as `LUMEN_RETRIES__MAX_ATTEMPTS=1` (see [environment
  variables](environment-variables.html)).
3. Per-pipeline and per-step settings in Python code.
4. The project `lumen.yaml` file.
5. The user file (`~/.config/lumen/lumen.yaml`, or `%APPDATA%\\Lumen\\lumen.yaml` on Windows).
6. Built-in defaults.

## Topics

- [Configuring retries and backoff](retries.html)
- [Environment variables](environment-variables.html)
- [Managing secrets](secrets.html)
- [Full configuration reference](/docs/configuration/reference.html)

Run `lumen config show` to print the effective configuration with the source of every value.
""",
)

CONFIG_RETRIES = Page(
    "docs/configuration/retries.html",
    "Configuring retries and backoff",
    "Configuration",
    """
Network calls fail, databases restart and APIs rate-limit. Lumen retries failed steps
automatically so that a transient error does not fail the whole run. This page explains how to
configure retries for a project, a pipeline or an individual step.

## Project-wide retries

Set the defaults in the `retries` block of `lumen.yaml`:

```yaml
retries:
  max_attempts: 4          # total attempts, including the first one
  backoff: exponential     # constant | linear | exponential
  initial_delay: 2s
  max_delay: 5m
  jitter: true
  retry_on:
    - ConnectionError
    - TimeoutError
    - lumen.errors.RateLimited
```

With these settings a failing step is attempted four times, waiting roughly 2, 4 and 8 seconds
between attempts. `jitter` adds up to 20% random variation to each delay so that many workers do
not retry in lockstep against the same service.

## Backoff strategies

| Strategy | Delay before attempt n | Typical use |
|---|---|---|
| `constant` | `initial_delay` | Polling a resource that becomes ready |
| `linear` | `initial_delay * n` | Lightly loaded internal services |
| `exponential` | `initial_delay * 2^(n-1)`, capped at `max_delay` | Public APIs, databases |

## Per-step retries

Override the defaults for a single step with decorator arguments. This is useful when one step
calls a flaky API and the rest of the pipeline should fail fast:

```python
@lumen.step(retries=6, backoff="exponential", initial_delay="5s", retry_on=[HTTPError])
def fetch_prices():
    return prices_api.fetch()
```

Setting `retries=1` disables retries for a step. To disable retries for a single run from the
command line, use `lumen run PIPELINE --max-attempts 1`.

## Which errors are retried

By default only errors that are likely to be transient are retried: connection errors, timeouts,
HTTP 429 and 5xx responses, and database serialization failures. Programming errors such as
`KeyError` or `TypeError` are never retried unless you list them in `retry_on`, because retrying
a bug only delays the failure.

> Retries happen inside a run. If all attempts fail, the run fails and its checkpoint is kept, so
> `lumen run PIPELINE --resume` continues from the failed step. See
> [checkpoints](../concepts/state-and-checkpoints.html).

## Related

- Every retry option in the [configuration reference](reference.html#retries).
- [Troubleshooting runs that retry forever](/docs/troubleshooting/index.html#retries-never-stop).
""",
)

CONFIG_ENV = Page(
    "docs/configuration/environment-variables.html",
    "Environment variables",
    "Configuration",
    """
Every option in `lumen.yaml` can also be set with an environment variable. This is the
recommended way to configure containers and CI jobs.

## Naming rule

Take the option path, join the levels with a double underscore, upper-case it and add the
`LUMEN_` prefix. For example `retries.max_attempts` becomes `LUMEN_RETRIES__MAX_ATTEMPTS` and
`state.dsn` becomes `LUMEN_STATE__DSN`.

## Special variables

| Variable | Meaning |
|---|---|
| `LUMEN_CONFIG` | Path of the configuration file to load |
| `LUMEN_HOME` | Directory for logs, caches and the default SQLite state store |
| `LUMEN_PROFILE` | Name of the profile to activate, for example `prod` |
| `LUMEN_NO_COLOR` | Disable coloured terminal output |
| `LUMEN_LOG_LEVEL` | Shortcut for `LUMEN_LOGGING__LEVEL` |

## Substitution in YAML

Values in `lumen.yaml` may reference environment variables with `${NAME}` or
`${NAME:-default}`. Substitution happens before the file is parsed, so quote values that may
contain colons.

```yaml
state:
  dsn: "${LUMEN_STATE_DSN:-sqlite:///.lumen/state.db}"
```

For passwords and tokens prefer a [secrets backend](secrets.html) over plain environment
variables, which are visible to anyone who can inspect the process.
""",
)

CONFIG_SECRETS = Page(
    "docs/configuration/secrets.html",
    "Managing secrets",
    "Configuration",
    """
Lumen resolves secrets at run time through `lumen.secret(name)` in Python or `${secret:name}` in
YAML. The value is fetched from the configured backend, cached for the duration of the run and
masked in logs.

## Backends

- `env` (default): reads the environment variable with the same name.
- `file`: reads `<secrets_dir>/<name>`, which suits Docker and Kubernetes secret mounts.
- `vault`: reads from HashiCorp Vault using a token or Kubernetes auth.
- `aws`: reads from AWS Secrets Manager.

```yaml
secrets:
  backend: vault
  vault:
    address: https://vault.internal:8200
    mount: kv
    path: data-platform/lumen
```

Lumen never writes secret values to the state store. If a step returns a secret by mistake, the
value is replaced by `***` in the run log.
""",
)

PAGES: list[Page] = [
    HOME,
    DOCS_INDEX,
    GETTING_STARTED,
    QUICKSTART,
    FIRST_PIPELINE,
    INSTALL_INDEX,
    INSTALL_LINUX,
    INSTALL_MACOS,
    INSTALL_WINDOWS,
    INSTALL_DOCKER,
    INSTALL_UPGRADING,
    CONFIG_INDEX,
    CONFIG_RETRIES,
    CONFIG_ENV,
    CONFIG_SECRETS,
]
