"""The long CLI reference and the `lumen run` page, rendered from a table of commands."""

from __future__ import annotations

from demo_site.site import Page

# (command, summary paragraph, [(flag, description)], example)
_COMMANDS: list[tuple[str, str, list[tuple[str, str]], str]] = [
    (
        "lumen init",
        "Create a new project directory with a `lumen.yaml` file, an example pipeline "
        "and a local SQLite state store. The command refuses to overwrite an existing "
        "configuration file unless you pass `--force`.",
        [
            ("`--template NAME`", "Start from a template: `minimal` (default), `etl` or `api`"),
            ("`--force`", "Overwrite existing files"),
        ],
        "lumen init analytics --template etl",
    ),
    (
        "lumen run",
        "Run a pipeline once, immediately, in the current process, and wait for it to "
        "finish. The exit code is 0 when the run succeeds and 1 when it fails, which makes the "
        "command suitable for cron jobs and CI. See [lumen run in depth](lumen-run.html) for "
        "parameters and resuming.",
        [
            ("`--param KEY=VALUE`", "Set a run parameter; may be repeated"),
            ("`--resume`", "Resume the most recent failed run from the failed step"),
            ("`--max-attempts N`", "Override `retries.max_attempts` for this run"),
            ("`--dry-run`", "Print the execution plan without running anything"),
            ("`--only STEP`", "Run one step, using stored outputs for its inputs"),
        ],
        "lumen run hourly-orders --param date=2024-05-01",
    ),
    (
        "lumen server",
        "Start the scheduler, the web UI and the HTTP API. The server evaluates "
        "schedules and places runs on the queue; it executes runs itself only when started with "
        "`--with-worker`, which is convenient on a laptop.",
        [
            ("`--host HOST`", "Interface to listen on (default `127.0.0.1`)"),
            ("`--port PORT`", "Port to listen on (default `7070`)"),
            ("`--with-worker`", "Also run an embedded worker"),
        ],
        "lumen server --host 0.0.0.0 --port 7070",
    ),
    (
        "lumen worker",
        "Start a worker that takes runs from the queue and executes them. Start as "
        "many workers as you need; they coordinate through the state store. On SIGTERM a worker "
        "finishes its current runs before exiting.",
        [
            ("`--concurrency N`", "Maximum parallel runs (default: number of CPUs)"),
            ("`--queue NAME`", "Only take runs from this queue; may be repeated"),
        ],
        "lumen worker --concurrency 4 --queue heavy",
    ),
    (
        "lumen runs list",
        "List recent runs, newest first, with their pipeline, status, start time "
        "and duration. Filters can be combined.",
        [
            ("`--pipeline NAME`", "Only runs of this pipeline"),
            ("`--status STATUS`", "`queued`, `running`, `succeeded`, `failed` or `cancelled`"),
            ("`--tag KEY=VALUE`", "Only runs of pipelines with this tag"),
            ("`--limit N`", "Show at most N runs (default 20)"),
        ],
        "lumen runs list --status failed --limit 50",
    ),
    (
        "lumen runs show",
        "Show one run in detail: parameters, every step with its attempts, the "
        "error of failed attempts and where the log file is.",
        [
            ("`--timings`", "Include CPU time, wall time and record counts per step"),
            ("`--logs`", "Print the full log after the summary"),
        ],
        "lumen runs show 1842 --timings",
    ),
    (
        "lumen runs cancel",
        "Cancel a queued or running run. Running steps receive a cancellation "
        "signal and have `worker.shutdown_timeout` to stop; the run can be resumed later.",
        [("`--force`", "Kill running steps immediately")],
        "lumen runs cancel 1842",
    ),
    (
        "lumen backfill",
        "Run a pipeline once for every period in a date range. Backfill runs do "
        "not read or update checkpoints, so they never disturb the regular schedule.",
        [
            ("`--start DATE`", "First period start (inclusive)"),
            ("`--end DATE`", "Last period end (exclusive)"),
            ("`--step DURATION`", "Length of each period, such as `1h` or `1d`"),
            ("`--parallel N`", "How many backfill runs may execute at once"),
        ],
        "lumen backfill daily-sales --start 2024-01-01 --end 2024-02-01 --step 1d --parallel 4",
    ),
    (
        "lumen checkpoint",
        "Inspect or change the checkpoint of a step. Resetting a checkpoint "
        "makes the next run start from scratch, for example after a schema change.",
        [
            ("`show PIPELINE STEP`", "Print the checkpoint as JSON"),
            ("`set PIPELINE STEP KEY VALUE`", "Change one key"),
            ("`reset PIPELINE STEP`", "Delete the checkpoint"),
        ],
        "lumen checkpoint reset tickets load",
    ),
    (
        "lumen config show",
        "Print the effective configuration after merging all sources, with the "
        "origin of every value (file, environment variable, profile or default). Secret values are "
        "masked.",
        [
            ("`--profile NAME`", "Show the configuration with a profile applied"),
            ("`--format yaml|json`", "Output format"),
        ],
        "lumen config show --profile prod",
    ),
    (
        "lumen migrate-config",
        "Convert a Lumen 1.x configuration file to format version 2. "
        "Without `--write` the converted file is printed so you can review it.",
        [("`--write`", "Replace the file in place, keeping a `.bak` copy")],
        "lumen migrate-config lumen.yaml --write",
    ),
    (
        "lumen state migrate",
        "Upgrade the state store schema after installing a new version. "
        "The command is idempotent and safe to run on every deployment.",
        [("`--check`", "Exit with status 1 if a migration is needed, without applying it")],
        "lumen state migrate",
    ),
    (
        "lumen doctor",
        "Check the installation: Python version, configuration file, state store "
        "connection, log directory permissions and clock skew between the server and the database.",
        [("`--json`", "Machine-readable output")],
        "lumen doctor",
    ),
    (
        "lumen pipelines list",
        "List every pipeline in the project with its schedule, queue, "
        "tags and the status of its most recent run. Pipelines that failed to load are listed "
        "with the error instead.",
        [
            ("`--schedule-only`", "Only pipelines that have a schedule"),
            ("`--format table|json`", "Output format"),
        ],
        "lumen pipelines list --format json",
    ),
    (
        "lumen pipelines pause",
        "Pause the schedule of a pipeline. Runs that are already queued "
        "or running continue; no new scheduled runs are created until you resume it with "
        "`lumen pipelines unpause`. Manual runs with `lumen run` still work.",
        [("`--reason TEXT`", "Shown in the web UI next to the paused pipeline")],
        "lumen pipelines pause hourly-orders --reason 'source API migration'",
    ),
    (
        "lumen logs",
        "Print or follow the log of a run. Without a run number, the command shows "
        "the most recent run of the given pipeline.",
        [
            ("`--follow`", "Keep printing new lines until the run finishes"),
            ("`--step STEP`", "Only lines from one step"),
            ("`--attempt N`", "Only lines from one retry attempt"),
        ],
        "lumen logs hourly-orders --follow",
    ),
    (
        "lumen examples fetch",
        "Download an example dataset used by the tutorials into the "
        "project's `data/` directory. Available datasets are `pos-sales`, `orders` and "
        "`tickets`.",
        [("`--dest DIR`", "Download into another directory")],
        "lumen examples fetch pos-sales",
    ),
    (
        "lumen completion",
        "Print a shell completion script for bash, zsh, fish or PowerShell. "
        "Load it from your shell profile to complete commands, flags and pipeline names.",
        [("`SHELL`", "One of `bash`, `zsh`, `fish`, `powershell`")],
        "lumen completion bash > ~/.local/share/bash-completion/completions/lumen",
    ),
    (
        "lumen validate",
        "Load every pipeline and check it without running it: import errors, "
        "cycles in the step graph, unknown configuration options and invalid cron expressions. Run "
        "it in CI before deploying.",
        [("`--strict`", "Treat warnings, such as unused steps, as errors")],
        "lumen validate --strict",
    ),
]

# Practical notes per command: the caveats users hit in practice, not just the flags.
_NOTES = {
    "lumen init": "The `etl` template adds a file source, a validation step and a warehouse "
    "sink wired together, which is a good starting point for batch loads. The `api` template "
    "shows an incremental HTTP source with a checkpointed cursor. Templates only generate "
    "files; nothing is registered anywhere, so you can delete a project directory at any time.",
    "lumen run": "Because the run happens in your terminal, the pipeline uses your environment "
    "variables, your credentials and your working directory. That is what you want while "
    "developing, but it also means that a pipeline that works with `lumen run` can still fail "
    "on a worker that lacks a secret or a Python package. Run `lumen validate` on the worker "
    "image to catch missing packages early. Press Ctrl+C once to cancel the run gracefully, "
    "which stores a checkpoint so that `--resume` can continue later; press it twice to abort "
    "immediately.",
    "lumen server": "Only one server should be active per state store. With PostgreSQL you may "
    "start a second server as a hot standby: it waits on an advisory lock and takes over "
    "within `scheduler.leader_lock_timeout` if the active server stops. With SQLite, starting "
    "a second server is refused.",
    "lumen worker": "Workers pick up new pipeline code when they start a run, not when they "
    "start, because each run executes in a fresh process. Deploying new code therefore does "
    "not require restarting workers, although restarting them is the simplest way to pick up "
    "new Python packages.",
    "lumen runs list": "The output is a table by default. Add `--format json` when you want to "
    "process the list with `jq` or another tool, for example to count failures per pipeline "
    "in a nightly report.",
    "lumen runs show": "For a failed run, the summary ends with the exception and the last "
    "twenty lines of the failed step's log. Together with `--timings` this is usually enough to "
    "tell a slow source from a slow sink.",
    "lumen runs cancel": "Cancelling is cooperative: a step that is blocked in a long database "
    "query only notices the cancellation when the query returns, unless the source supports "
    "interruption. Use `--force` when a step is stuck, and resume the run afterwards.",
    "lumen backfill": "Backfills can put heavy load on sources. Start with `--parallel 1` for a "
    "short range, look at the run times, and raise the parallelism gradually. A backfill can "
    "be cancelled as a whole with `lumen runs cancel --backfill ID`.",
    "lumen checkpoint": "Resetting a checkpoint of an incremental pipeline means the next run "
    "reloads all history. Make sure the sink uses upserts, or truncate the target table first, "
    "otherwise the reload duplicates data.",
    "lumen config show": "This is the first command to run when a setting seems to be ignored: "
    "the origin column shows immediately whether an environment variable or a profile wins "
    "over the value you edited.",
    "lumen migrate-config": "The converter handles every documented 1.x option. Options it "
    "does not recognise are kept and reported as warnings, so review them by hand before "
    "deleting the backup.",
    "lumen state migrate": "Run the migration with all workers stopped. Servers and workers of "
    "the new version refuse to start against an old schema and exit with status 3 and a "
    "message that names this command.",
    "lumen doctor": "Include the output of `lumen doctor --json` when you ask for help in the "
    "forum or open a support ticket; it contains everything needed to reproduce your setup "
    "except secrets.",
    "lumen pipelines list": "Use this command in scripts to discover pipelines instead of "
    "parsing the `pipelines/` directory yourself: it applies exactly the same loading rules as "
    "the server, including skipped files and profiles.",
    "lumen pipelines pause": "Pausing is stored in the state store, not in the configuration "
    "file, so it survives restarts and deployments. Check for forgotten pauses with "
    "`lumen pipelines list`, which marks paused pipelines.",
    "lumen logs": "Logs are read from `logging.directory` on the machine where the run executed. "
    "When workers run on other machines, configure a shared log directory or ship logs to a "
    "central system and use that instead.",
    "lumen examples fetch": "The datasets are small, between one and twenty megabytes, and "
    "contain a few deliberately malformed rows so that validation steps have something to do.",
    "lumen completion": "On Windows, add the output of `lumen completion powershell` to the "
    "file named by `$PROFILE`. Completion of pipeline names reads the project in the current "
    "directory, so it works best when you run it from the project root.",
    "lumen validate": "Validation imports your pipeline modules, so code at module level runs. "
    "Keep module-level code free of side effects such as network calls.",
}

_WORKFLOW = """A typical day with Lumen uses only a handful of commands. You create a project once
with `lumen init`, write pipelines in the `pipelines/` directory and try them with `lumen run`.
Before you commit, `lumen validate` checks that every pipeline loads. In production the
`lumen server` and `lumen worker` processes run continuously, and you use `lumen runs list`,
`lumen runs show` and `lumen run --resume` when something fails. `lumen backfill` and
`lumen checkpoint` are the tools for re-processing data after a fix.

```bash
lumen init shop-analytics && cd shop-analytics
lumen run orders --dry-run        # show the plan
lumen run orders                  # run it once
lumen validate --strict           # what CI runs
lumen runs list --status failed   # what on-call runs
```"""

_SCRIPTING = """Every command that prints a list or a report accepts `--format json` (or `--json`),
and the JSON output is stable across minor releases, so scripts do not break when the table
layout changes. Exit codes are documented below and never change within a major version.
Commands never prompt for input when standard input is not a terminal, which makes them safe
to call from cron, CI pipelines and configuration management tools. Colours are disabled
automatically when output is redirected; set `LUMEN_NO_COLOR=1` to disable them everywhere.

```bash
# Fail a CI job if any pipeline failed in the last 24 hours
failed=$(lumen runs list --status failed --since 24h --format json | jq length)
if [ "$failed" -gt 0 ]; then
    echo "$failed failed runs" >&2
    exit 1
fi
```"""

_EXIT_CODES = """| Code | Meaning |
|---|---|
| 0 | Success |
| 1 | The run or check failed |
| 2 | Invalid command-line usage |
| 3 | Configuration error |
| 4 | Cannot reach the state store |
| 130 | Interrupted with Ctrl+C |"""


def _render() -> str:
    """Build the Markdown body of the CLI reference."""
    out = [
        "The `lumen` command-line tool manages projects, runs pipelines, starts servers and "
        "workers, and inspects the state store. Every command accepts `--help`. Global options "
        "go before the command name.",
        "",
        "## Global options",
        "",
        "| Option | Description |",
        "|---|---|",
        "| `--config PATH` | Use this configuration file instead of searching for `lumen.yaml` |",
        "| `--profile NAME` | Activate a configuration profile |",
        "| `--log-level LEVEL` | Override `logging.level` |",
        "| `--no-color` | Disable coloured output |",
        "| `--version` | Print the version and exit |",
        "",
        "## Typical workflow",
        "",
        _WORKFLOW,
        "",
        "## Commands",
    ]
    for cmd, summary, flags, example in _COMMANDS:
        out += ["", f"### {cmd}", "", summary, "", "| Option | Description |", "|---|---|"]
        out += [f"| {flag} | {desc} |" for flag, desc in flags]
        out += ["", "```bash", example, "```", "", _NOTES[cmd]]
    out += ["", "## Scripting with the CLI", "", _SCRIPTING]
    out += [
        "",
        "## Exit codes",
        "",
        _EXIT_CODES,
        "",
        "The deprecated `lumen exec` alias behaves like `lumen run` and prints a warning. It "
        "will be removed in Lumen 3.0; see the [upgrade guide](../install/upgrading.html).",
    ]
    return "\n".join(out)


CLI_REFERENCE = Page("docs/cli/index.html", "CLI reference", "CLI reference", _render())

LUMEN_RUN = Page(
    "docs/cli/lumen-run.html",
    "lumen run in depth",
    "CLI reference",
    """
`lumen run PIPELINE` executes a pipeline once in the current process. It is the command you use
while developing, in CI, and when you want to trigger a run by hand on a server.

## Parameters

Runs can be parameterised. Steps read parameters from `ctx.params`, and the pipeline may declare
defaults. Values are strings unless the pipeline declares a type.

```bash
lumen run daily-sales --param date=2024-05-01 --param region=emea
```

## Resuming a failed run

When a run fails after exhausting its [retries](../configuration/retries.html), fix the cause and
resume it. Steps that already succeeded are not executed again; their stored outputs are reused.

```bash
lumen run daily-sales --resume
```

Resuming only works while the outputs are retained (`state.output_retention`, seven days by
default). After that, start a fresh run or a backfill.

## Running one step

`--only STEP` runs a single step with the stored outputs of its upstream steps, which is handy
when you are iterating on the last step of a long pipeline. See the full [CLI
reference](index.html).
""",
)

PAGES: list[Page] = [CLI_REFERENCE, LUMEN_RUN]
