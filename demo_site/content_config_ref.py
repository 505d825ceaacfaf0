"""The long configuration reference page, rendered from a table of documented options."""

from __future__ import annotations

from demo_site.site import Page

# (group, option, type, default, description, optional YAML example)
_OPTIONS: list[tuple[str, str, str, str, str, str]] = [
    (
        "project",
        "version",
        "integer",
        "required",
        "Version of the configuration file format. Lumen 2.x only accepts `2`. Files without a "
        "version are treated as 1.x files and rejected with a message that suggests running "
        "`lumen migrate-config`.",
        "",
    ),
    (
        "project",
        "project",
        "string",
        "directory name",
        "Name of the project. It appears in the web UI, in metric labels and in notification "
        "messages, so choose a short, stable name. Renaming a project does not lose history, "
        "because runs are keyed by pipeline name.",
        "",
    ),
    (
        "project",
        "pipelines_dir",
        "path",
        "`pipelines/`",
        "Directory that Lumen scans for pipeline definitions. Every Python file in it is imported "
        "when the project loads, and every YAML file whose top-level key is `pipeline` is parsed. "
        "Files that start with an underscore are skipped, which is a convenient place for shared "
        "helpers.",
        "",
    ),
    (
        "project",
        "profiles",
        "mapping",
        "empty",
        "Named sets of overrides, activated with `--profile NAME` or `LUMEN_PROFILE`. Profiles are "
        "merged on top of the rest of the file, so a `prod` profile usually only changes the state "
        "store, the log format and notification targets.",
        "profiles:\n  prod:\n    state:\n      backend: postgres\n      dsn: ${secret:state-dsn}\n"
        "    logging:\n      format: json",
    ),
    (
        "state",
        "state.backend",
        "string",
        "`sqlite`",
        "Which state store to use: `sqlite` or `postgres`. SQLite is a good choice for a laptop or "
        "a single small server. As soon as more than one process needs the state store, for "
        "example a server and a separate worker, use PostgreSQL, because SQLite serialises writers "
        "and does not support the notifications that the scheduler relies on.",
        "",
    ),
    (
        "state",
        "state.path",
        "path",
        "`.lumen/state.db`",
        "Location of the SQLite database file when `state.backend` is `sqlite`. Relative paths are "
        "resolved against the project directory. The directory is created if it does not exist.",
        "",
    ),
    (
        "state",
        "state.dsn",
        "string",
        "none",
        "Connection string for the PostgreSQL state store, for example "
        "`postgresql://lumen@db.internal:5432/lumen`. Put the password in a secrets backend and "
        "reference it with `${secret:name}` instead of writing it into the file.",
        "",
    ),
    (
        "state",
        "state.pool_size",
        "integer",
        "`10`",
        "Maximum number of database connections each Lumen process keeps open. Workers need about "
        "one connection per concurrent run plus two; raise this together with "
        "`worker.concurrency`.",
        "",
    ),
    (
        "state",
        "state.output_retention",
        "duration",
        "`7d`",
        "How long step outputs are kept. Outputs are needed to resume failed runs, so keep them at "
        "least as long as it might take you to notice and fix a failure. Large outputs count "
        "against the state store size, which is why the default is a week rather than forever.",
        "",
    ),
    (
        "state",
        "state.run_retention",
        "duration",
        "`90d`",
        "How long run history, logs and timings are kept before they are deleted by the vacuum "
        "job.",
        "",
    ),
    (
        "retries",
        "retries.max_attempts",
        "integer",
        "`3`",
        "Total number of attempts for a failing step, including the first attempt. A value of `1` "
        "disables retries. This is the project default; pipelines and steps can override it with "
        "their own `retries` argument, and a single run can override it with "
        "`lumen run --max-attempts N`.",
        "retries:\n  max_attempts: 5",
    ),
    (
        "retries",
        "retries.backoff",
        "string",
        "`exponential`",
        "How the delay grows between attempts: `constant`, `linear` or `exponential`. Exponential "
        "backoff is the right default for anything reached over a network, because it gives an "
        "overloaded service time to recover.",
        "",
    ),
    (
        "retries",
        "retries.initial_delay",
        "duration",
        "`2s`",
        "Delay before the second attempt. With exponential backoff the delay doubles for every "
        "further attempt.",
        "",
    ),
    (
        "retries",
        "retries.max_delay",
        "duration",
        "`5m`",
        "Upper bound for the delay between two attempts, whatever the backoff strategy. It keeps "
        "exponential backoff from producing delays of hours when `max_attempts` is large.",
        "",
    ),
    (
        "retries",
        "retries.jitter",
        "boolean",
        "`true`",
        "Add up to 20% random variation to every delay. Jitter spreads retries from many workers "
        "over time so that they do not hit a recovering service at the same moment.",
        "",
    ),
    (
        "retries",
        "retries.retry_on",
        "list of exception names",
        "transient errors",
        "Exception classes that trigger a retry. The default list contains connection errors, "
        "timeouts, `lumen.errors.RateLimited`, `lumen.errors.ServerError` (HTTP 5xx) and database "
        "serialization failures. Names are resolved by import path, for example "
        "`psycopg.OperationalError`.",
        "retries:\n  retry_on:\n    - ConnectionError\n    - psycopg.OperationalError",
    ),
    (
        "retries",
        "retries.give_up_on",
        "list of exception names",
        "empty",
        "Exception classes that are never retried even if they are subclasses of an entry in "
        "`retry_on`. Useful for authentication errors, which never fix themselves.",
        "",
    ),
    (
        "scheduler",
        "scheduler.timezone",
        "string",
        "`UTC`",
        "IANA time zone in which cron expressions are evaluated, such as `Europe/Berlin`. Lumen "
        "handles daylight-saving transitions without duplicate or skipped runs.",
        "",
    ),
    (
        "scheduler",
        "scheduler.catchup",
        "string",
        "`latest`",
        "What to do about runs that were missed while the server was down: `none` skips them, "
        "`latest` starts one catch-up run and `all` starts one run per missed interval.",
        "",
    ),
    (
        "scheduler",
        "scheduler.max_queue_length",
        "integer",
        "`10000`",
        "When the queue holds this many runs, new scheduled runs are dropped and a warning is "
        "logged. A growing queue means there are not enough workers.",
        "",
    ),
    (
        "scheduler",
        "scheduler.leader_lock_timeout",
        "duration",
        "`5s`",
        "How quickly a standby server takes over when the active server stops renewing its "
        "advisory lock. Only relevant with the PostgreSQL state store.",
        "",
    ),
    (
        "worker",
        "worker.concurrency",
        "integer",
        "number of CPUs",
        "Maximum number of runs one worker executes at the same time. Runs are executed in "
        "separate processes, so a crash in one run does not affect others. For I/O-bound "
        "pipelines a value of two to four times the number of CPUs works well.",
        "",
    ),
    (
        "worker",
        "worker.memory_limit",
        "size",
        "none",
        "Memory limit per run process, for example `2GB`. A run that exceeds it is killed and "
        "fails with `MemoryLimitExceeded`, which is not retried.",
        "",
    ),
    (
        "worker",
        "worker.shutdown_timeout",
        "duration",
        "`10m`",
        "On SIGTERM a worker stops taking new runs and waits this long for running ones to finish "
        "before cancelling them. Cancelled runs can be resumed.",
        "",
    ),
    (
        "worker",
        "worker.queues",
        "list of strings",
        "`[default]`",
        "Queues this worker takes runs from. Pipelines choose a queue with the `queue` argument, "
        "which lets you route heavy pipelines to large machines.",
        "",
    ),
    (
        "logging",
        "logging.level",
        "string",
        "`info`",
        "Minimum level of log messages: `debug`, `info`, `warning` or `error`. Step loggers "
        "inherit this level unless the step sets its own.",
        "",
    ),
    (
        "logging",
        "logging.format",
        "string",
        "`text`",
        "`text` for human-readable logs or `json` for one JSON object per line, which is easier "
        "for log aggregation systems to parse.",
        "",
    ),
    (
        "logging",
        "logging.directory",
        "path",
        "`$LUMEN_HOME/logs`",
        "Where run logs are written. Each run gets its own file, named after the pipeline and run "
        "number.",
        "",
    ),
    (
        "logging",
        "logging.redact",
        "list of strings",
        "empty",
        "Additional regular expressions whose matches are replaced by `***` in logs. Secrets "
        "resolved through `lumen.secret` are always redacted.",
        "",
    ),
    (
        "secrets",
        "secrets.backend",
        "string",
        "`env`",
        "Where secrets are read from: `env`, `file`, `vault` or `aws`. See the guide on managing "
        "secrets for the options of each backend.",
        "",
    ),
    (
        "secrets",
        "secrets.cache_ttl",
        "duration",
        "`run`",
        "How long a resolved secret is cached. The default caches it for the duration of a run; "
        "set a duration such as `15m` for long-running processes that should pick up rotated "
        "credentials.",
        "",
    ),
    (
        "notifications",
        "notifications.on_failure",
        "list of targets",
        "empty",
        "Where to send a message when a run fails after all retries. Targets are Slack webhooks, "
        "email addresses or generic webhooks. The message contains the pipeline, run number, "
        "failed step and the last lines of its log.",
        "notifications:\n  on_failure:\n    - slack: ${secret:slack-webhook}\n"
        "    - email: data-oncall@example.com",
    ),
    (
        "notifications",
        "notifications.on_recovery",
        "list of targets",
        "empty",
        "Where to send a message when a pipeline succeeds after one or more failed runs.",
        "",
    ),
    (
        "notifications",
        "notifications.quiet_hours",
        "string",
        "none",
        "A time range such as `22:00-07:00` during which notifications are collected and sent as "
        "one summary at the end of the range.",
        "",
    ),
    (
        "server",
        "server.host",
        "string",
        "`127.0.0.1`",
        "Interface the web UI and API listen on. Use `0.0.0.0` inside containers.",
        "",
    ),
    ("server", "server.port", "integer", "`7070`", "Port of the web UI and API.", ""),
    (
        "server",
        "server.auth",
        "string",
        "`none`",
        "Authentication for the web UI: `none`, `basic` or `oidc`. Never expose a server with "
        "`none` outside a trusted network.",
        "",
    ),
]

_GROUP_INTRO = {
    "project": "Top-level settings that identify the project and locate its pipelines.",
    "state": "Settings of the state store that holds runs, step outputs and checkpoints.",
    "retries": "Project-wide defaults for retrying failed steps. See the "
    "[retries guide](retries.html) for a gentler introduction.",
    "scheduler": "Settings of the scheduler that runs inside `lumen server`.",
    "worker": "Settings of `lumen worker` processes.",
    "logging": "Where and how Lumen writes logs.",
    "secrets": "How `lumen.secret` and `${secret:name}` are resolved. See "
    "[managing secrets](secrets.html).",
    "notifications": "Messages sent when runs fail or recover.",
    "server": "The web UI and HTTP API served by `lumen server`.",
}


# Practical guidance per section; the option list alone does not say when to touch a setting.
_GROUP_ADVICE = {
    "project": "Most projects never change these settings after `lumen init`. The one you are "
    "most likely to add later is `profiles`, once the same project runs on laptops, in CI and "
    "in production. Keep profiles small: a profile that overrides dozens of options is hard to "
    "review, and differences between environments are a common source of surprises. Prefer "
    "environment variables for values that differ per machine, such as hostnames, and "
    "profiles for behaviour that differs per environment, such as log format and alerting.",
    "state": "The state store is the only stateful component of a Lumen deployment, so treat it "
    "like any other production database: back it up, monitor its size and upgrade it with "
    "`lumen state migrate` after installing a new version. When the state store grows faster "
    "than expected, the usual culprit is a step that returns a large object, such as a full "
    "data frame, instead of writing it to a sink and returning a small summary. Lowering "
    "`state.output_retention` helps, but changing the step is the real fix.",
    "retries": "Retries turn transient failures into slower successes instead of failed runs. "
    "They are not a substitute for fixing errors that always happen. A good policy retries "
    "network and database errors a handful of times with exponential backoff and jitter, gives "
    "up immediately on authentication and validation errors, and caps the total time spent "
    "waiting with `max_delay` and a pipeline `timeout`. If a step needs many more attempts "
    "than the rest of the project, override `retries` on that step rather than raising the "
    "project default, so that genuinely broken steps still fail fast.",
    "scheduler": "The scheduler settings matter only on the machine that runs `lumen server`. "
    "Set `scheduler.timezone` explicitly if your schedules are meant in local time, because "
    "the UTC default surprises many users twice a year when daylight saving starts and ends. "
    "Leave `catchup` at `latest` unless downstream consumers really need one run per missed "
    "interval; starting hundreds of catch-up runs after a long outage can overload sources.",
    "worker": "Size workers for the pipelines they run. CPU-heavy pipelines want "
    "`concurrency` close to the number of cores, while I/O-heavy pipelines that mostly wait "
    "for APIs and databases can run many more runs in parallel. Use separate queues and "
    "worker pools for pipelines with very different resource needs, so that one memory-hungry "
    "pipeline cannot starve hundreds of small ones.",
    "logging": "Use the `text` format on laptops and `json` in production, where logs are "
    "collected by an agent and searched in a central system. Raise the level to `debug` for a "
    "single run with `lumen run --log-level debug` instead of changing the file.",
    "secrets": "Every credential should go through the secrets backend, even in development, "
    "so that the same pipeline code works unchanged in every environment. The `env` backend "
    "is a convenient start; move to `file`, `vault` or `aws` when you deploy to shared "
    "infrastructure.",
    "notifications": "Notify the people who can act on a failure. A common setup sends "
    "failures of business-critical pipelines to the on-call channel and everything else to a "
    "lower-priority channel, using profiles or per-pipeline overrides.",
    "server": "The server exposes the web UI and an HTTP API that can start and cancel runs. "
    "Put it behind your usual reverse proxy, terminate TLS there, and enable `basic` or "
    "`oidc` authentication before exposing it to anyone outside the data team.",
}

# Rotating phrasings keep the per-option environment note from being one repeated sentence.
_ENV_NOTES = (
    "To set `{opt}` without editing the file, for example in a container, export `{env}`. "
    "The environment variable overrides `lumen.yaml` but is itself overridden by "
    "command-line flags.",
    "In CI jobs and containers it is often easier to provide `{opt}` as the environment "
    "variable `{env}`; `lumen config show` reports which of the two is in effect.",
    "`{env}` overrides `{opt}` for every process started with it, which is handy when one "
    "machine needs a different value from the rest of the deployment.",
)


def _env_name(option: str) -> str:
    """Environment variable that overrides an option, following the documented naming rule."""
    return "LUMEN_" + option.upper().replace(".", "__")


def _render() -> str:
    """Build the Markdown body of the configuration reference."""
    out = [
        "This page lists every option that can appear in `lumen.yaml`, grouped by section. "
        "Each option can also be set through an environment variable, shown next to it, and "
        "most can be overridden per pipeline in Python. See [configuring Lumen](index.html) "
        "for how the sources of configuration are combined.",
        "",
        "| Section | Purpose |",
        "|---|---|",
    ]
    for g, intro in _GROUP_INTRO.items():
        out.append(f"| `{g}` | {intro.split('. See')[0].rstrip('.')} |")
    group = ""
    for g, name, typ, default, desc, example in _OPTIONS:
        if g != group:
            group = g
            out += ["", f"## {g}", "", _GROUP_INTRO[g], "", _GROUP_ADVICE[g]]
        note = _ENV_NOTES[len(out) % len(_ENV_NOTES)]
        out += [
            "",
            f"### {name}",
            "",
            desc,
            "",
            note.format(opt=name, env=_env_name(name)),
            "",
            f"- Type: {typ}",
            f"- Default: {default}",
            f"- Environment: `{_env_name(name)}`",
        ]
        if example:
            out += ["", "```yaml", example, "```"]
    out += ["", "## Complete example", "", "```yaml", _EXAMPLE, "```"]
    return "\n".join(out)


_EXAMPLE = """version: 2
project: analytics
pipelines_dir: pipelines/
state:
  backend: postgres
  dsn: ${secret:state-dsn}
  output_retention: 14d
retries:
  max_attempts: 4
  backoff: exponential
  initial_delay: 5s
  max_delay: 10m
  give_up_on:
    - lumen.errors.AuthenticationError
scheduler:
  timezone: Europe/Berlin
  catchup: latest
worker:
  concurrency: 8
  memory_limit: 4GB
logging:
  level: info
  format: json
notifications:
  on_failure:
    - slack: ${secret:slack-webhook}"""

CONFIG_REFERENCE = Page(
    "docs/configuration/reference.html",
    "Configuration reference",
    "Configuration",
    _render(),
)

PAGES: list[Page] = [CONFIG_REFERENCE]
