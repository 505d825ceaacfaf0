"""Long support pages rendered from tables: troubleshooting, changelog and FAQ."""

from __future__ import annotations

from demo_site.site import Page

# (heading, symptom, cause, fix, optional code)
_PROBLEMS: list[tuple[str, str, str, str, str]] = [
    (
        "Command not found",
        "After installing, the shell reports `lumen: command not found`, or on Windows "
        "`'lumen' is not recognized as an internal or external command`.",
        "The directory that contains the `lumen` executable is not on your `PATH`. With pip this "
        "usually means the virtual environment is not activated; with the Windows installer it "
        "means the terminal was opened before the installer updated `PATH`.",
        "Activate the virtual environment, or open a new terminal after running the installer. "
        "You can always run Lumen as a module, which does not depend on `PATH`.",
        "source ~/.venvs/lumen/bin/activate   # Linux and macOS\n"
        ".venv\\Scripts\\activate               # Windows\n"
        "python -m lumen --version",
    ),
    (
        "Windows long paths",
        "On Windows, a step fails with `FileNotFoundError` or `OSError: [WinError 206]` for a "
        "file that clearly exists.",
        "The full path is longer than 260 characters, the classic Windows limit. Deeply nested "
        "project directories and long pipeline names make this more likely.",
        "Enable long path support once per machine from an elevated PowerShell prompt, then sign "
        "out and in again. Alternatively move the project closer to the drive root.",
        "New-ItemProperty -Path HKLM:\\SYSTEM\\CurrentControlSet\\Control\\FileSystem `\n"
        "    -Name LongPathsEnabled -Value 1 -PropertyType DWORD -Force",
    ),
    (
        "StateSchemaError",
        "Every run fails immediately with `StateSchemaError: state store schema 14 is older than "
        "required schema 17`.",
        "Lumen was upgraded but the state store schema was not. This happens after every upgrade "
        "that changes the schema, including the upgrade from 1.x to 2.0.",
        "Stop all workers, run the migration once, then start the workers again. The command is "
        "idempotent, so it is safe to add it to your deployment script.",
        "lumen state migrate\nlumen doctor",
    ),
    (
        "Retries never stop",
        "A step keeps retrying for hours, or a run seems stuck in `running` while the log shows "
        "attempt after attempt.",
        "A very large `retries.max_attempts` combined with a large `retries.max_delay`, or a step "
        "that raises an error listed in `retry_on` for a problem that will never fix itself, such "
        "as an expired password.",
        "Keep `max_attempts` small (three to six) and list permanent errors in "
        "`retries.give_up_on`. Set a `timeout` on the pipeline so that a run cannot retry "
        "indefinitely.",
        "retries:\n  max_attempts: 5\n  max_delay: 2m\n  give_up_on:\n"
        "    - lumen.errors.AuthenticationError",
    ),
    (
        "Database is locked",
        "Runs fail with `sqlite3.OperationalError: database is locked`.",
        "Several processes share the SQLite state store. SQLite allows only one writer at a time.",
        "Use SQLite only with a single process (`lumen server --with-worker`). For separate "
        "workers, switch the state store to PostgreSQL.",
        "state:\n  backend: postgres\n  dsn: ${secret:state-dsn}",
    ),
    (
        "Cannot connect to the state store",
        "`lumen doctor` reports `cannot reach state store` and commands exit with code 4.",
        "Wrong `state.dsn`, a firewall between Lumen and PostgreSQL, or a missing database.",
        "Check the connection string with `psql` from the same machine, then check that the "
        "database exists and the user may create tables in it.",
        "psql \"$LUMEN_STATE__DSN\" -c 'select 1'",
    ),
    (
        "Schedules run at the wrong time",
        "A daily pipeline runs at 01:00 or 03:00 instead of 02:00, usually after a clock change.",
        "`scheduler.timezone` is UTC (the default) while you think in local time, or the server "
        "runs a version older than 2.0.2, which had daylight-saving bugs.",
        "Set `scheduler.timezone` to your IANA zone and upgrade to the latest 2.x release.",
        "",
    ),
    (
        "Runs stay queued",
        "Runs are created on schedule but stay in `queued` and never start.",
        "No worker is running, all workers are busy, or the workers listen on different queues "
        "from the one the pipeline uses.",
        "Check `lumen_queue_length` and `lumen_worker_busy`, start more workers, and compare the "
        "pipeline's `queue` argument with each worker's `--queue` flags.",
        "",
    ),
    (
        "Worker killed with exit code 137",
        "A run fails with `worker process exited with code 137` and no Python traceback.",
        "The operating system or Kubernetes killed the process for using too much memory.",
        "Stream records with generators instead of building large lists, lower the sink "
        "`batch_size`, or raise the memory limit of the worker.",
        "",
    ),
    (
        "ImportError when loading pipelines",
        "`lumen validate` or the server reports `ModuleNotFoundError` for a package you use in a "
        "step.",
        "The package is installed in a different Python environment from the one Lumen runs in. "
        "Homebrew and the static binary use their own bundled Python.",
        "Install the package into Lumen's environment, or install Lumen with pip into your own "
        "virtual environment.",
        "$(brew --prefix lumen)/libexec/bin/pip install requests",
    ),
    (
        "HTTP 429 Too Many Requests",
        "A source step logs many `RateLimited` retries and the run is slow.",
        "The API rate-limits the pipeline, often because `lumen.map` calls it in parallel.",
        "Lower `max_workers`, respect the `Retry-After` header (Lumen does this automatically "
        "when the source raises `RateLimited`), and increase `retries.initial_delay`.",
        "",
    ),
    (
        "Secrets appear as ***",
        "A value you expected in the log or output shows as `***`.",
        "Lumen redacts every value resolved through `lumen.secret` and every match of "
        "`logging.redact`, even when it appears inside other text.",
        "This is intentional. If a non-secret value is redacted because it equals a secret, such "
        "as a short token, rotate the secret to a longer value.",
        "",
    ),
    (
        "Pipeline not found",
        "`lumen run orders` fails with `PipelineNotFound: no pipeline named 'orders'`.",
        "The file that defines the pipeline is not in `pipelines_dir`, its name starts with an "
        "underscore, or importing it raised an exception, in which case the pipeline is skipped "
        "and the import error is logged at warning level.",
        "Run `lumen validate`, which lists every pipeline it found and every file it could not "
        "import, together with the traceback.",
        "lumen validate\nlumen validate --strict",
    ),
    (
        "Step output is too large",
        "A run fails with `OutputTooLarge: output of step 'extract' is 1.4 GB (limit 256 MB)`.",
        "Lumen stores the return value of every step in the state store so that runs can be "
        "resumed. Returning an entire dataset from a step makes the state store grow quickly and "
        "slows every run down.",
        "Write large data to a sink or to object storage inside the step and return only a "
        "reference, such as a file path or a table name, plus a few counts. Raise "
        "`state.max_output_size` only as a last resort.",
        "",
    ),
    (
        "Duplicate rows after a retry",
        "After a run that needed retries, the target table contains some rows twice.",
        "The sink uses `append` mode. When an attempt fails after writing part of its data, the "
        "next attempt writes the same rows again.",
        "Use `upsert` with a key for every sink that may be retried or backfilled, and remove the "
        "duplicates once with a query that keeps one row per key.",
        "",
    ),
    (
        "Clock skew warning",
        "`lumen doctor` warns `clock skew of 4.2s between server and state store`.",
        "The clocks of the Lumen server and the database server differ. Lumen compares scheduled "
        "times with the database clock, so a large skew makes runs start early or late.",
        "Run an NTP client such as `chrony` or `systemd-timesyncd` on both machines.",
        "timedatectl status\nsudo systemctl enable --now chronyd",
    ),
    (
        "SSL certificate verify failed",
        "An HTTP source fails with `SSLError: certificate verify failed: unable to get local "
        "issuer certificate`.",
        "The API uses a certificate signed by an internal certificate authority that the Python "
        "environment does not trust. This is common behind corporate proxies and on Windows "
        "machines where Python does not use the system certificate store.",
        "Point Lumen at your organisation's CA bundle. Do not disable verification: the setting "
        "exists for local testing only and is logged as a warning on every request.",
        "export LUMEN_HTTP__CA_BUNDLE=/etc/ssl/certs/corp-ca.pem",
    ),
    (
        "Permission denied on the log directory",
        "The server or a worker exits at start-up with `PermissionError: [Errno 13] Permission "
        "denied: '/var/log/lumen'`.",
        "The service user cannot write to `logging.directory`. This typically happens when Lumen "
        "was first started as root and later as an unprivileged user.",
        "Give the service user ownership of the directory, or point `logging.directory` at a "
        "directory it owns.",
        "sudo chown -R lumen:lumen /var/log/lumen",
    ),
    (
        "Run times out",
        "A run fails with `RunTimeout: run exceeded timeout of 1h` although every step finished "
        "quickly in earlier runs.",
        "The pipeline `timeout` covers the whole run including time spent waiting between retry "
        "attempts. A dependency that was slow or unavailable for a while can push the run past "
        "its limit.",
        "Look at the attempts in `lumen runs show RUN_ID`. If retries consumed the time, lower "
        "`retries.max_delay`; if the data volume grew, raise the timeout.",
        "",
    ),
    (
        "Web UI shows no pipelines",
        "The web UI at port 7070 loads, but the pipeline list is empty.",
        "The server was started from a directory that is not the project root, so it found no "
        "`lumen.yaml`, or it uses a different state store from the workers.",
        "Start the server with `--config /path/to/lumen.yaml` or from the project directory, and "
        "compare `lumen config show` on the server and on a worker.",
        "",
    ),
    (
        "Backfill runs do nothing",
        "A backfill creates runs that succeed instantly and load no data.",
        "The pipeline reads its cursor from a checkpoint and ignores `ctx.params`. Backfill runs "
        "do not use checkpoints, so the step must read the period from the parameters.",
        'Read `ctx.params["start"]` and `ctx.params["end"]` when they are present and fall '
        "back to the checkpoint otherwise.",
        "",
    ),
    (
        "Too many open files",
        "A worker with high concurrency fails with `OSError: [Errno 24] Too many open files`.",
        "Each run process opens log files, database connections and network sockets. The default "
        "limit of 1024 file descriptors on many Linux distributions is too low for a worker that "
        "runs dozens of runs at once.",
        "Raise the limit for the service, for example with `LimitNOFILE=65536` in the systemd "
        "unit, or lower `worker.concurrency`.",
        "sudo systemctl edit lumen-worker@.service\n# add: [Service] LimitNOFILE=65536",
    ),
    (
        "Encoding errors when reading CSV files",
        "A file source fails with `UnicodeDecodeError: 'utf-8' codec can't decode byte 0xe9`.",
        "The file is not UTF-8. Exports from spreadsheet programs and older systems are often "
        "encoded as Windows-1252 or Latin-1.",
        "Pass the encoding to the source or to `lumen.read_csv`, for example "
        '`encoding="cp1252"`. Use `encoding="utf-8-sig"` for UTF-8 files that start with a '
        "byte order mark.",
        "",
    ),
    (
        "Configuration option is ignored",
        "You changed an option in `lumen.yaml` but the behaviour did not change.",
        "A higher-precedence source sets the same option: an environment variable, a profile, a "
        "command-line flag or an argument in Python code.",
        "Run `lumen config show` to see the effective value and where it comes from.",
        "lumen config show | grep max_attempts",
    ),
]

# (version, date, [(kind, text)])
_RELEASES: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "2.1.2",
        "2024-06-18",
        [
            ("Fixed", "Backfills with `--parallel` no longer start more runs than requested."),
            ("Fixed", "`lumen config show` masks secrets nested inside lists."),
            (
                "Security",
                "Updated the bundled OpenSSL in the Windows installer and static binaries.",
            ),
        ],
    ),
    (
        "2.1.1",
        "2024-05-27",
        [
            ("Fixed", "The MySQL source handles `DATETIME` columns with fractional seconds."),
            ("Fixed", "Worker shutdown no longer waits for runs that were already cancelled."),
        ],
    ),
    (
        "2.1.0",
        "2024-05-02",
        [
            ("Added", "MySQL and MariaDB source with incremental cursors."),
            ("Added", "`retries.give_up_on` to stop retrying permanent errors."),
            ("Added", "`notifications.quiet_hours` to batch night-time notifications."),
            ("Added", "`lumen run --only STEP` to run a single step with stored inputs."),
            ("Changed", "The default `state.pool_size` was raised from 5 to 10."),
            ("Fixed", "Long paths on Windows are handled when long path support is enabled."),
        ],
    ),
    (
        "2.0.2",
        "2024-03-21",
        [
            (
                "Fixed",
                "Schedules in time zones with daylight saving no longer run twice or skip a "
                "run on the night the clocks change.",
            ),
            ("Fixed", "`lumen migrate-config` keeps comments in the converted file."),
        ],
    ),
    (
        "2.0.1",
        "2024-03-05",
        [
            ("Fixed", "The PostgreSQL state store reconnects after a failover instead of exiting."),
            ("Fixed", "`lumen doctor` no longer reports clock skew for sub-second differences."),
        ],
    ),
    (
        "2.0.0",
        "2024-02-20",
        [
            (
                "Added",
                "New asynchronous, event-driven scheduler that handles more than 50,000 "
                "schedules on one server, with leader election for high availability.",
            ),
            ("Added", "`@lumen.step` decorator; dependencies are inferred from calls."),
            ("Added", "Checkpoints and `lumen run --resume` are enabled for every pipeline."),
            ("Added", "Configuration file format version 2 and `lumen migrate-config`."),
            ("Added", "Retry jitter, enabled by default."),
            (
                "Changed",
                "Per-step `retry:` blocks were replaced by the project-wide `retries:` "
                "block with per-step overrides.",
            ),
            ("Changed", "`lumen schedule start` is now `lumen server`."),
            ("Deprecated", "`lumen exec` is an alias of `lumen run` and will be removed in 3.0."),
            ("Removed", "Support for Python 3.7 and 3.8."),
            ("Removed", "The `lumen.legacy` module and the `lumen.Task` base class."),
        ],
    ),
    (
        "1.8.4",
        "2024-01-10",
        [
            ("Security", "Final security release of the 1.x series."),
        ],
    ),
    (
        "1.8.0",
        "2023-10-03",
        [
            ("Added", "`lumen doctor` command."),
            ("Added", "Support for Python 3.11."),
            ("Changed", "SQLite state store uses write-ahead logging, making reads much faster."),
        ],
    ),
    (
        "1.7.0",
        "2023-06-14",
        [
            ("Added", "Prometheus metrics endpoint on the server and workers."),
            ("Added", "Vault and AWS Secrets Manager backends."),
            ("Fixed", "Backfills respect `max_concurrent_runs`."),
        ],
    ),
    (
        "1.6.0",
        "2023-02-01",
        [
            ("Added", "Docker image for `linux/arm64`."),
            ("Deprecated", "The `lumen.legacy` module."),
        ],
    ),
]

# (question, answer)
_FAQ: list[tuple[str, str]] = [
    (
        "How do I install Lumen on Windows?",
        "Use the MSI installer, `winget install --id LumenLabs.Lumen`, or `pip install "
        "lumen-pipelines` in a virtual environment. The [Windows installation guide]"
        "(docs/install/windows.html) covers all three and the Windows-specific settings.",
    ),
    (
        "Which Python versions are supported?",
        "Lumen 2.x supports Python 3.9 to 3.12. Python 3.7 and 3.8 were dropped in 2.0.",
    ),
    (
        "How do I configure retries?",
        "Set `retries.max_attempts`, `retries.backoff` and `retries.initial_delay` in `lumen.yaml`, "
        "or override them per step with `@lumen.step(retries=...)`. See "
        "[configuring retries](docs/configuration/retries.html).",
    ),
    (
        "What changed in version 2.0?",
        "A new asynchronous scheduler, the `@lumen.step` decorator, checkpoints on by default and "
        "configuration format version 2. Python 3.7 and 3.8 support and the `lumen.legacy` module "
        "were removed. Read the [upgrade guide](docs/install/upgrading.html) and the "
        "[changelog](changelog.html).",
    ),
    (
        "Is Lumen a replacement for Airflow?",
        "For many teams, yes. Lumen focuses on data pipelines written in Python and needs only a "
        "PostgreSQL database to run in production. It has no plugin marketplace and no support for "
        "arbitrary task types such as running Spark jobs on a remote cluster, so very large "
        "platforms with many heterogeneous tasks may still prefer Airflow.",
    ),
    (
        "Can I run Lumen without a server?",
        "Yes. `lumen run` executes a pipeline in the current process, so you can trigger pipelines "
        "from cron, CI or another scheduler. You only need `lumen server` for schedules and the "
        "web UI.",
    ),
    (
        "Do I need PostgreSQL?",
        "Not for development or a single process: the bundled SQLite state store works out of the "
        "box. Use PostgreSQL as soon as a server and separate workers share the state store.",
    ),
    (
        "How do I re-run a failed pipeline without repeating finished steps?",
        "Run `lumen run PIPELINE --resume`. Lumen reuses the stored outputs of steps that succeeded "
        "and executes only the failed step and everything downstream of it.",
    ),
    (
        "How do I load historical data?",
        "Use `lumen backfill` with a date range and period length. Backfill runs do not touch "
        "checkpoints, so the regular schedule continues unaffected.",
    ),
    (
        "Where are the logs?",
        "In `$LUMEN_HOME/logs` by default, one file per run; `%LOCALAPPDATA%\\Lumen\\logs` on "
        "Windows. `lumen runs show RUN_ID --logs` prints them.",
    ),
    (
        "How do I keep passwords out of my configuration?",
        'Reference them with `${secret:name}` in YAML or `lumen.secret("name")` in Python and '
        "configure a [secrets backend](docs/configuration/secrets.html).",
    ),
    (
        "Can steps run in parallel?",
        "Steps without a dependency between them run in parallel when the worker has free slots. "
        "Inside a step, use `lumen.map` for parallel I/O.",
    ),
    (
        "How do I get notified when a pipeline fails?",
        "Add Slack webhooks, email addresses or generic webhooks to `notifications.on_failure`.",
    ),
    (
        "Does Lumen support streaming?",
        "No. Lumen runs batch and micro-batch pipelines; the shortest useful schedule is about one "
        "minute. Streaming sources are being discussed for a future major version.",
    ),
    (
        "Is there commercial support?",
        "Yes, Lumen Labs offers support subscriptions. See [getting help](support.html).",
    ),
]


_DIAGNOSE = """## How to diagnose a failing run

Most problems can be narrowed down in a few minutes with the same routine. First, find the run
and the failed step with `lumen runs list --status failed` and `lumen runs show RUN_ID`. The
summary tells you whether the step failed on the first attempt or only after several retries:
a step that fails immediately usually has a bug or a configuration problem, while a step that
fails after all its retries usually depends on a service that was unavailable for longer than
the retry policy allowed.

Second, read the log of the failed attempt, not only the exception. The lines before the
exception often show which record or which request caused the failure. Raise the log level for
one run with `lumen run PIPELINE --log-level debug` if the default log is not detailed enough.

Third, check the environment. `lumen doctor` verifies the installation and the state store, and
`lumen config show` prints the effective configuration, which catches most "it works on my
machine" problems: a missing environment variable, a profile that is not active, or a secret that
resolves to a different value on the worker.

```bash
lumen runs list --status failed --limit 5
lumen runs show 1842 --logs
lumen doctor
lumen config show --profile prod
```

Finally, once you have fixed the cause, continue the run with `lumen run PIPELINE --resume`
rather than starting it from scratch, so that finished steps are not repeated."""


def _troubleshooting_md() -> str:
    """Build the troubleshooting page body from the problem table."""
    out = [
        "This page collects the problems that users report most often, with their usual cause "
        "and a fix. Start with `lumen doctor`, which detects many of them automatically. For "
        "slow pipelines, see [troubleshooting performance](performance.html).",
        "",
        _DIAGNOSE,
    ]
    for heading, symptom, cause, fix, code in _PROBLEMS:
        out += [
            "",
            f"## {heading}",
            "",
            f"**Symptom.** {symptom}",
            "",
            f"**Cause.** {cause}",
            "",
            f"**Fix.** {fix}",
        ]
        if code:
            lang = "yaml" if code.split("\n")[0].endswith(":") else "bash"
            out += ["", f"```{lang}", code, "```"]
    out += ["", "Still stuck? See [getting help](/support.html) or the [FAQ](../../faq.html)."]
    return "\n".join(out)


def _changelog_md() -> str:
    """Build the changelog body, newest release first, grouped by kind of change."""
    out = [
        "All notable changes to Lumen are documented here. Lumen follows semantic versioning: "
        "breaking changes only happen in major versions. For help moving from 1.x, see "
        "[upgrading to 2.0](docs/install/upgrading.html).",
    ]
    for version, date, entries in _RELEASES:
        out += ["", f"## {version} ({date})"]
        kinds = list(dict.fromkeys(kind for kind, _ in entries))
        for kind in kinds:
            out += ["", f"### {kind}", ""]
            out += [f"- {text}" for k, text in entries if k == kind]
    return "\n".join(out)


def _faq_md() -> str:
    """Build the FAQ body."""
    out = [
        "Answers to the questions we hear most often. For error messages, see the "
        "[troubleshooting guide](docs/troubleshooting/index.html)."
    ]
    for question, answer in _FAQ:
        out += ["", f"## {question}", "", answer]
    return "\n".join(out)


PAGES: list[Page] = [
    Page(
        "docs/troubleshooting/index.html",
        "Troubleshooting common problems",
        "Troubleshooting",
        _troubleshooting_md(),
    ),
    Page("changelog.html", "Changelog", "Changelog", _changelog_md()),
    Page("faq.html", "Frequently asked questions", "FAQ", _faq_md()),
]
