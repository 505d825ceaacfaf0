"""``make bench``: the platform against a plain script, streaming against batch, memory, scale.

    python -m bench --n 500                       # what `make bench` runs
    python -m bench --n 20 --smoke --out /tmp/b   # the smoke version the tests run
    python -m bench --report-only                 # tables and chart again from bench/out

One session, one generated site (``demo_site.generate.generate_site``, N pages, fixed
seed), served on 127.0.0.1; every scenario runs in a fresh DATA_DIR under ``--out``, each
as a child process tree whose summed RSS and CPU time are sampled every 0.2 s and which
is killed at the end whatever happens. A scenario that fails is reported as failed in the
table; the others still run. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from bench.procs import Registry, Tracked

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
MB = 1024 * 1024

# Targets of issue 6.
P1_MAX = 1.15
P2_MAX = 1.10
P3_MAX_S = 5.0
P4_MIN = 0.90
P5_MAX_BYTES = 1.5 * 1024**3
P5_MAX_GROWTH = 0.10
P6_MAX_S = 2.0
P6_MAX_RUNS = 1
P7_MAX_REEMBED = 0
P7_MAX_RATIO = 0.10
P8_MIN = 1.7
P9_MAX = 2.0
P10_MAX_S = 10.0
P11_MAX_TICK_S = 2.0
P11_MAX_RUN_START_S = 30.0

# rag_app.runner.fail_orphaned_runs: a daemon heartbeat younger than this blocks `rag run`.
DAEMON_HEARTBEAT_S = 62.0

# The `rag run` scenarios and their DATA_DIR under --out ((e) re-crawls (c)'s).
PLATFORM_DIRS = {
    "c": "c_streaming",
    "e": "c_streaming",
    "b": "b_batch",
    "c2": "c_streaming_overlap",
    "scale": "c_scale",
    "p9c": "p9_demo_streaming",
}


@dataclass
class Result:
    """One scenario's row of the table."""

    key: str
    label: str
    latency_ms: float = 0.0
    status: str = "not run"
    wall_s: float | None = None
    cpu_s: float | None = None
    pages: int | None = None
    chunks: int | None = None
    chunks_per_s: float | None = None
    runs: int | None = None
    peak_rss: int | None = None
    ttfe_s: float | None = None
    notes: str = ""
    data: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def measured(self, tracked: Tracked) -> None:
        """What every scenario gets from its process tree."""
        self.wall_s, self.cpu_s, self.peak_rss = tracked.wall_s, tracked.cpu_s, tracked.peak_rss
        self.data["rss_breakdown_mb"] = {
            k: round(v / MB)
            for k, v in sorted(tracked.peak_breakdown.items(), key=lambda kv: -kv[1])
        }
        self.data["load_1min"] = [round(tracked.load_start, 2), round(tracked.load_end, 2)]


# ---------------------------------------------------------------------------------------------
# helpers


def platform_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for one scenario: this one's without Dagster's or a shared server's."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DAGSTER") and k not in ("EMBEDDING_SERVER_URL", "PYTEST_CURRENT_TEST")
    }
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "DUCKDB_PATH": str(data_dir / "rag.duckdb"),
            "PYTHONUNBUFFERED": "1",
            # No EMBEDDING_DTYPE here: the baseline script, the platform and (d) all use the
            # default (auto: bfloat16 on CPUs with native BF16), so P1 and P4 compare them
            # with the same fast path; P8 names float32 and bfloat16 explicitly.
        }
    )
    env.update(extra)
    return env


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def duck_counts(db: Path) -> dict[str, int]:
    from rag_app.status import table_counts

    return table_counts(db) if db.exists() else {}


def fmt(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def failure(tracked: Tracked | None, why: str) -> str:
    if tracked is not None and tracked.returncode is None:
        return f"FAILED: timed out after {tracked.wall_s:.0f} s ({why})"
    code = tracked.returncode if tracked is not None else "?"
    return f"FAILED: exit {code} ({why})"


def cpu_flags() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return ""
    return ",".join(f for f in ("avx512_bf16", "amx_bf16") if f in flags)


def platform_version() -> str:
    """The commit measured, and whether the work tree differed from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    except OSError:
        return "unknown"
    if not commit:
        return "unknown (not a git work tree)"
    return commit + (f" + uncommitted changes to {len(dirty)} file(s)" if dirty else "")


def fmt_load() -> str:
    with contextlib.suppress(OSError):
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return "?"


def timeline_phases(path: Path, t0: float) -> dict[str, float]:
    """When the first item file and the first embedding were counted (s since ``t0``)."""
    phases: dict[str, float] = {}
    if not path.is_file():
        return phases
    from bench.plot import read_timeline

    names = (("files", "first item file counted"), ("embeddings", "first embedding counted"))
    for row in read_timeline(path):
        for column, name in names:
            if row[column] > 0 and name not in phases:
                phases[name] = round(row["epoch"] - t0, 1)
    return phases


def near_tie_gaps(f32: dict, b16: dict) -> list[float]:
    """For each question whose top-5 set differs: the float32 score gap between the chunk
    bfloat16 dropped and the one it brought in (small gaps are near-ties, not regressions)."""
    gaps = []
    for mine, theirs, scored in zip(
        f32.get("top5", []), b16.get("top5", []), f32.get("top10_scores", []), strict=False
    ):
        if set(mine) == set(theirs):
            continue
        score = dict((cid, value) for cid, value in scored)
        dropped = [score[c] for c in mine if c not in theirs]
        added = [score[c] for c in theirs if c not in mine and c in score]
        if dropped and added:
            gaps.append(max(dropped) - min(added))
        else:
            gaps.append(float("nan"))
    return gaps


def run_start_s(run: dict) -> float | None:
    """P11b: creating one run over many partitions plus the resolution of its partition keys
    that each of its steps does (bench/partition_scale.py)."""
    if run.get("create_run_s") is None:
        return None
    return run["create_run_s"] + (run.get("resolve_partition_keys_s") or 0)


def _rel(ts: float | None, t0: float) -> float | None:
    return round(ts - t0, 1) if ts else None


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


# ---------------------------------------------------------------------------------------------
# the benchmark session


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out: Path = args.out.resolve()
        self.registry = Registry()
        self.results: dict[str, Result] = {}
        self.servers: list = []
        self.ratios: list[dict] = []
        self.timeouts = max(900.0, args.n * 4.0)
        self.load_start = fmt_load()
        self.version = platform_version()
        self.command = " ".join(["python -m bench", *sys.argv[1:]])
        self.rerendered = False

    # -- set-up ----------------------------------------------------------------------------
    def prepare(self) -> None:
        from demo_site.generate import generate_site

        if self.out.exists():
            for child in self.out.iterdir():
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        self.site_root = self.out / "site"
        generate_site(self.site_root, n_pages=self.args.n, seed=self.args.seed)
        print(f"Generated {self.args.n} pages in {time.monotonic() - t:.1f} s: {self.site_root}")
        self.site_url = self.serve(self.site_root, self.args.latency_ms)
        from demo_site.serve import DEMO_SITE_ROOT

        # P9: the bundled demo site, served as `make run` serves it (no added latency).
        self.demo_url = self.serve(DEMO_SITE_ROOT, 0)
        if self.reuse_streaming:
            self.overlap_url = self.site_url
        else:
            self.overlap_url = self.serve(self.site_root, self.args.overlap_latency_ms)

    @property
    def reuse_streaming(self) -> bool:
        """The smoke run: the overlap figures come from (c) itself (same latency, concurrency)."""
        a = self.args
        return a.overlap_latency_ms == a.latency_ms and a.overlap_concurrency == a.concurrency

    def serve(self, root: Path, latency_ms: float) -> str:
        from demo_site.serve import SiteServer

        server = SiteServer(root, host="127.0.0.1", port=0, latency_ms=latency_ms).start()
        self.servers.append(server)
        print(f"Serving {root.name} at {server.url} with {latency_ms:.0f} ms latency")
        return server.url

    @staticmethod
    def concurrency_env(concurrency: int | None) -> dict[str, str]:
        return {"CRAWL_CONCURRENCY": str(concurrency)} if concurrency else {}

    # -- one scenario, failures contained ---------------------------------------------------
    def scenario(self, key: str, label: str, latency_ms: float, fn) -> Result:
        result = Result(key, label, latency_ms)
        self.results[key] = result
        print(f"\n== {label} ==", flush=True)
        try:
            fn(result)
            if result.status == "not run":
                result.status = "ok"
        except Exception as exc:  # noqa: BLE001 - one scenario's failure must not stop the rest
            result.status = f"FAILED: {type(exc).__name__}: {exc}"[:300]
            traceback.print_exc()
        if result.chunks and result.wall_s and result.chunks_per_s is None:
            result.chunks_per_s = result.chunks / result.wall_s
        print(
            f"-> {result.status}; wall {fmt(result.wall_s, 1)} s, CPU {fmt(result.cpu_s, 1)} s, "
            f"pages {fmt(result.pages)}, chunks {fmt(result.chunks)}, peak RSS "
            f"{fmt((result.peak_rss or 0) / MB, 0)} MB, first page->first embedding "
            f"{fmt(result.ttfe_s, 1)} s",
            flush=True,
        )
        return result

    @staticmethod
    def judge(r: Result, tracked: Tracked, wrote_summary: bool = True, show_tail: bool = True):
        """Mark ``r`` failed when its tool exited non-zero or wrote no summary, pointing at the
        tool's log (whose tail goes to stderr unless ``show_tail`` is off)."""
        if tracked.returncode == 0 and wrote_summary:
            return
        if show_tail:
            print(tracked.tail(), file=sys.stderr)
        r.status = failure(tracked, f"see {tracked.log_path}")

    def tracked(self, name: str, cmd: list[str], env: dict, log: Path, timeout: float):
        return self.registry.run(name, cmd, env, ROOT, log, timeout)

    def rag_run(
        self,
        r: Result,
        url: str,
        mode: str,
        concurrency: int | None,
        timeout_s: float | None = None,
    ) -> Tracked:
        """``rag run`` with --json-summary and --timeline into the scenario's DATA_DIR."""
        data_dir = self.out / PLATFORM_DIRS[r.key]
        data_dir.mkdir(parents=True, exist_ok=True)
        summary_path = data_dir / f"summary_{r.key}.json"
        timeline = data_dir / f"timeline_{r.key}.csv"
        env = platform_env(
            data_dir,
            START_URLS=url,
            PIPELINE_MODE=mode,
            RUN_TIMEOUT_SECONDS=str(int(timeout_s or self.timeouts)),
            **self.concurrency_env(concurrency),
        )
        cmd = [PY, "-m", "rag_app.cli", "run", "--json-summary", str(summary_path)]
        cmd += ["--timeline", str(timeline)]
        log = data_dir / "logs" / f"rag_run_{r.key}.log"
        tracked = self.tracked(f"rag-run-{r.key}", cmd, env, log, (timeout_s or self.timeouts) + 60)
        r.measured(tracked)
        summary = read_json(summary_path)
        r.data.update(
            summary=summary, timeline=str(timeline), started=tracked.started, ended=tracked.ended
        )
        r.pages, r.chunks = summary.get("pages"), summary.get("chunks")
        r.runs = summary.get("dagster_runs")
        r.ttfe_s = summary.get("first_file_to_first_embedding_s")
        r.data["phases"] = {
            "model warm": _rel(tracked.first_line_time("Embedding model warm"), tracked.started),
            "crawl run queued": _rel(tracked.first_line_time("queued"), tracked.started),
            **timeline_phases(timeline, tracked.started),
        }
        r.data["timed_out"] = any("RUN_TIMEOUT_SECONDS" in line for _, line in tracked.lines)
        self.judge(r, tracked, bool(summary))
        self.analyse_platform(r)
        return tracked

    def analyse_platform(self, r: Result) -> None:
        """From the Dagster instance: the runs' profile, and the notes that depend on it."""
        from bench.dagster_profile import profile, totals

        try:
            prof = profile(self.out / PLATFORM_DIRS[r.key] / "dagster_home", r.data["started"])
            r.data.pop("profile_error", None)
        except Exception as exc:  # noqa: BLE001 - the profile is diagnostic only
            r.data["profile_error"] = repr(exc)
            prof = None
        if prof is not None:  # (c) and (e) share an instance: keep this session's runs
            end = r.wall_s if r.wall_s is not None else float("inf")
            prof["runs"] = [x for x in prof["runs"] if 0 <= (x["created"] or -1) <= end]
            prof.update(totals(prof["runs"]))
        r.data["profile"] = prof
        parts = []
        if prof:
            parts.append(
                f"{prof['ingestion_runs']} ingestion run(s), embedder calls "
                f"{prof['ingest_encode_s']} s"
            )
            runs = prof["runs"]
            crawl_end = max((x["ended"] or 0 for x in runs if x["lane"] == "crawl"), default=0)
            ingest_end = max((x["ended"] or 0 for x in runs if x["lane"] == "ingest"), default=0)
            if r.key == "b" and crawl_end and ingest_end:
                r.data["ingest_after_crawl_s"] = round(ingest_end - crawl_end, 2)
                parts.append(f"ingestion after the crawl {ingest_end - crawl_end:.1f} s")
            if r.key == "e":
                r.runs = len(runs)
                r.data["reembedded"] = prof["embedded"]
                before, after = r.data.get("before", {}), r.data.get("after", {})
                summary = r.data.get("summary", {})
                parts.append(
                    f"{prof['embedded']} chunk(s) re-embedded (runs' `embedded` metadata; the "
                    f"summary's chunks_embedded: {summary.get('chunks_embedded', 'n/a')}), "
                    f"embeddings {before.get('embeddings')} -> {after.get('embeddings')}"
                )
        top = list(r.data.get("rss_breakdown_mb", {}).items())
        if top:
            parts.append("RSS at peak (MB): " + ", ".join(f"{k} {v}" for k, v in top))
        load = r.data.get("load_1min")
        if load:
            parts.append(f"load {load[0]} -> {load[1]}")
        r.notes = "; ".join(parts)

    # -- the scenarios ----------------------------------------------------------------------
    def run_baseline(self, r: Result, url: str | None = None, folder: str = "a_baseline") -> None:
        data_dir = self.out / folder
        data_dir.mkdir(parents=True)
        summary_path = data_dir / "summary.json"
        env = platform_env(data_dir, **self.concurrency_env(self.args.concurrency))
        cmd = [PY, "-m", "bench.baseline", "--start-url", url or self.site_url]
        tracked = self.tracked(
            "baseline", cmd + ["--json", str(summary_path)], env, data_dir / "baseline.log",
            self.timeouts,
        )  # fmt: skip
        r.measured(tracked)
        summary = read_json(summary_path)
        r.pages, r.chunks = summary.get("pages"), summary.get("chunks")
        r.runs = 0
        r.ttfe_s = summary.get("first_file_to_first_embedding_s")
        r.data["summary"] = summary
        t = summary.get("times", {})
        store_s = (t.get("store_docs_s") or 0) + (t.get("store_embeddings_s") or 0)
        r.notes = (
            f"crawl {fmt(t.get('crawl_s'), 1)} s (model load {fmt(t.get('model_load_s'), 1)} s "
            f"beside it), then ingest {fmt(t.get('ingest_s'), 1)} s: extract "
            f"{fmt(t.get('read_extract_s'), 1)}, chunk {fmt(t.get('chunk_s'), 1)}, encode "
            f"{fmt(t.get('encode_s'), 1)}, store {store_s:.1f}; load "
            f"{r.data['load_1min'][0]} -> {r.data['load_1min'][1]}"
        )
        self.judge(r, tracked, bool(summary))

    def other_dtype(self) -> str:
        """The dtype (d) did not use: P8 needs one encode in each."""
        d = self.results.get("d")
        used = d.data.get("summary", {}).get("dtype") if d is not None else None
        return "float32" if used == "bfloat16" else "bfloat16"

    def run_encode_only(self, r: Result, dtype: str = "auto") -> None:
        c = self.results.get("c")
        db = self.out / PLATFORM_DIRS["c"] / "rag.duckdb"
        if c is None or not c.ok or not db.exists():
            raise RuntimeError("needs the chunks of (c), which failed")
        out = self.out / f"d_encode_{dtype}.json"
        cmd = [PY, "-m", "bench.encode_only", "--db", str(db), "--dtype", dtype]
        tracked = self.tracked(
            f"encode-{dtype}", cmd + ["--json", str(out)], platform_env(self.out / "d_encode"),
            self.out / f"d_encode_{dtype}.log", self.timeouts,
        )  # fmt: skip
        r.measured(tracked)
        summary = read_json(out)
        r.data["summary"] = summary
        r.chunks = summary.get("chunks")
        r.chunks_per_s = summary.get("chunks_per_s")
        r.notes = (
            f"{dtype}: encode {fmt(summary.get('encode_s'), 1)} s after a "
            f"{fmt(summary.get('load_s'), 1)} s load and warm-up; chunks/s is of the encode alone"
        )
        if summary.get("max_abs_diff_vs_stored") is not None:
            r.notes += f"; max |vector - stored| {summary['max_abs_diff_vs_stored']:.1e}"
        r.notes += f"; load {r.data['load_1min'][0]} -> {r.data['load_1min'][1]}"
        self.judge(r, tracked, bool(summary))

    def run_recrawl(self, r: Result) -> None:
        c = self.results.get("c")
        if c is None or not c.ok:
            raise RuntimeError("needs the DATA_DIR of (c), which failed")
        db = self.out / PLATFORM_DIRS["e"] / "rag.duckdb"
        # `rag run` refuses an instance whose daemon beat less than 60 s ago (it cannot tell a
        # stopped daemon from a live one), so (e) starts at least that long after (c) ended.
        wait = DAEMON_HEARTBEAT_S - (time.time() - c.data.get("ended", 0))
        if wait > 0:
            print(f"waiting {wait:.0f} s for (c)'s daemon heartbeat to age", flush=True)
            time.sleep(wait)
        r.data["before"] = duck_counts(db)
        # P7b's target is 10 % of (c): past (c)'s own wall time it fails anyway, so a re-crawl
        # that hangs costs no more than that and the rest of the session goes on.
        timeout = max(30.0, c.wall_s or 0.0)
        r.data["after"] = {}
        self.rag_run(r, self.site_url, "streaming", self.args.concurrency, timeout)
        r.data["after"] = duck_counts(db)
        for name in ("first item file counted", "first embedding counted"):
            r.data["phases"].pop(name, None)  # the counts include (c)'s rows
        r.chunks = r.data["after"].get("chunks")
        self.analyse_platform(r)

    def run_crawl_alone(self, r: Result) -> None:
        data_dir = self.out / "crawl_alone"
        raw = data_dir / "raw"
        cmd = [PY, "-m", "crawler", "--start-url", self.overlap_url, "--raw-dir", str(raw)]
        cmd += ["--stats-file", str(data_dir / "stats.json"), "--log-level", "INFO"]
        if self.args.overlap_concurrency:
            cmd += ["--concurrency", str(self.args.overlap_concurrency)]
        tracked = self.tracked(
            "crawl-alone", cmd, platform_env(data_dir), data_dir / "crawl.log", self.timeouts
        )
        r.measured(tracked)
        r.pages = len(list(raw.glob("item_*.json")))
        r.runs = 0
        stats = read_json(data_dir / "stats.json")
        r.notes = f"Scrapy's own elapsed {fmt(stats.get('elapsed_seconds'), 1)} s"
        self.judge(r, tracked, show_tail=False)

    def run_partition_scale(self, r: Result) -> None:
        """P11: the sensor tick over 100,000 item files and the creation of one run over
        10,000 partitions, on a fresh instance (bench/partition_scale.py)."""
        out = self.out / "p11_partition_scale.json"
        cmd = [PY, "-m", "bench.partition_scale", "--files", str(self.args.p11_files)]
        cmd += ["--run-partitions", str(self.args.p11_run_partitions), "--skip-default-events"]
        tracked = self.tracked(
            "partition-scale", cmd + ["--json", str(out)], platform_env(self.out / "p11"),
            self.out / "p11_partition_scale.log", 3600,
        )  # fmt: skip
        r.measured(tracked)
        summary = read_json(out)
        r.data["summary"] = summary
        r.runs = 1
        first, run = summary.get("first_tick", {}), summary.get("run_subset_events", {})
        r.notes = (
            f"{summary.get('partitions_registered')} partitions registered by the first tick "
            f"({first.get('error') or 'no error'}); tick {fmt(first.get('tick_s'))} s, idle tick "
            f"{fmt(summary.get('idle_tick', {}).get('tick_s'))} s; one run over "
            f"{summary.get('run_partitions')} partitions created in {fmt(run_start_s(run))} s"
        )
        self.judge(r, tracked, bool(summary))

    def run_search_latency(self, r: Result) -> None:
        c = self.results.get("c")
        if c is None or not c.ok:
            raise RuntimeError("needs the DATA_DIR of (c), which failed")
        data_dir = self.out / PLATFORM_DIRS["c"]
        out = self.out / "p9_search.json"
        # The smoke run only proves the harness: two searches each way, no slow torch path.
        runs = "2" if self.args.smoke else "5"
        cmd = [PY, "-m", "bench.search_startup", "--data-dir", str(data_dir), "--runs", runs]
        cmd += ["--skip-torch"] if self.args.smoke else []
        tracked = self.tracked(
            "search-latency", cmd + ["--json", str(out)], platform_env(data_dir),
            self.out / "p9_search.log", 900,
        )  # fmt: skip
        r.measured(tracked)  # CPU s: the whole measurement; wall and RSS: one search, below
        summary = read_json(out)
        r.data["summary"] = summary
        warm, cold, old = (summary.get(k, {}) for k in ("warm", "cold", "torch"))
        r.wall_s = warm.get("p50_s")
        r.peak_rss = int(warm["peak_rss_mb"] * MB) if warm.get("peak_rss_mb") else None
        r.runs = 0
        r.notes = (
            f"one `rag search` process each: warm server p50 {fmt(warm.get('p50_s'))} s, "
            f"{warm.get('peak_rss_mb')} MB; no server (numpy encoder) p50 "
            f"{fmt(cold.get('p50_s'))} s, {cold.get('peak_rss_mb')} MB; the earlier path "
            f"(torch + sentence-transformers) {fmt(old.get('p50_s'))} s, "
            f"{old.get('peak_rss_mb')} MB; load {summary.get('load_start')} -> "
            f"{summary.get('load_end')}"
        )
        self.judge(r, tracked, bool(summary))

    def run_sensor(self, r: Result) -> None:
        out = self.out / "p6_sensor.json"
        cmd = [PY, "-m", "bench.sensor_tick", "--files", str(self.args.sensor_files)]
        tracked = self.tracked(
            "sensor-tick", cmd + ["--json", str(out)], platform_env(self.out / "p6"),
            self.out / "p6_sensor.log", 600,
        )  # fmt: skip
        r.measured(tracked)
        summary = read_json(out)
        r.data["summary"] = summary
        first = summary.get("first_tick", {})
        r.pages = summary.get("files")
        r.runs = first.get("runs_requested")
        r.notes = (
            f"first tick {fmt(first.get('tick_s'), 3)} s (evaluate "
            f"{fmt(first.get('evaluate_s'), 3)} + register partitions "
            f"{fmt(first.get('register_partitions_s'), 3)}), {first.get('runs_requested')} run "
            f"for {first.get('items_in_run')} items; idle tick "
            f"{fmt(summary.get('idle_tick', {}).get('tick_s'), 3)} s; +100 files tick "
            f"{fmt(summary.get('plus_100_tick', {}).get('tick_s'), 3)} s"
        )
        self.judge(r, tracked, bool(summary), show_tail=False)

    def run_scale(self, r: Result) -> None:
        from demo_site.generate import generate_site

        n = self.args.scale_n
        root = self.out / "site_scale"
        generate_site(root, n_pages=n, seed=self.args.seed)
        url = self.serve(root, self.args.latency_ms)
        self.rag_run(r, url, "streaming", self.args.concurrency, max(self.timeouts, n * 4.0))

    # -- the ratios -------------------------------------------------------------------------
    def ratio(self, pid: str, measure: str, value, target: str, passes) -> None:
        """One line of the ratio table; ``passes`` is None (not judged) or a predicate."""
        if passes is None or value is None or isinstance(value, str):
            result = "n/a"
        else:
            result = "PASS" if passes(value) else "FAIL"
        self.ratios.append(
            {"id": pid, "measure": measure, "value": value, "target": target, "result": result}
        )

    def compute_ratios(self) -> None:
        self.ratios = []
        res, a_ = self.results, self.args
        a, c, d = res.get("a"), res.get("c"), res.get("d")
        e, b, c2 = res.get("e"), res.get("b"), res.get("c2")
        crawl, p6 = res.get("crawl"), res.get("p6")
        scale = res.get("scale")
        # P8 compares bfloat16 with float32: (d) ran in the default dtype, (d') in the other.
        other = res.get("d_other")
        d_dtype = d.data.get("summary", {}).get("dtype") if d is not None else None
        f32, bf16 = (other, d) if d_dtype == "bfloat16" else (d, other)
        check = self.ratio

        def ok(*rs):
            return all(x is not None and x.ok for x in rs)

        def div(x, y):
            return x / y if x is not None and y else None

        lat, olat = f"{a_.latency_ms:.0f} ms", f"{a_.overlap_latency_ms:.0f} ms"
        # P1: the platform against the plain script (and the CPU it burns for the same work).
        v = div(c.wall_s, a.wall_s) if ok(a, c) else None
        check("P1", f"(c) streaming wall / (a) baseline wall, {lat}", v, f"<= {P1_MAX}",
              lambda x: x <= P1_MAX)  # fmt: skip
        v = div(c.cpu_s, a.cpu_s) if ok(a, c) else None
        check("P1cpu", f"(c) CPU s / (a) CPU s, whole process trees, {lat} (not load-bound)",
              v, f"<= {P1_MAX}", lambda x: x <= P1_MAX)  # fmt: skip
        # P2: streaming hides the shorter of crawl and ingestion behind the longer.
        ingest_b = b.data.get("ingest_after_crawl_s") if ok(b) else None
        ingest_a = a.data.get("summary", {}).get("times", {}).get("ingest_s") if ok(a) else None
        v = div(c2.wall_s, max(crawl.wall_s, ingest_b)) if ok(c2, crawl) and ingest_b else None
        check("P2", f"(c) wall / max(crawl alone, (b)'s ingestion after its crawl), {olat}", v,
              f"<= {P2_MAX}", lambda x: x <= P2_MAX)  # fmt: skip
        v = div(c2.wall_s, max(crawl.wall_s, ingest_a)) if ok(c2, crawl) and ingest_a else None
        check("P2b", f"(c) wall / max(crawl alone, (a)'s ingest part), {olat}", v,
              f"<= {P2_MAX}", lambda x: x <= P2_MAX)  # fmt: skip
        # P3: time to the first searchable result.
        v = c.ttfe_s if ok(c) else None
        check("P3", f"first item file -> first stored embedding in (c), {lat}, s", v,
              f"<= {P3_MAX_S:.0f}", lambda x: x <= P3_MAX_S)  # fmt: skip
        # P4: how much of the model's own speed the whole platform keeps.
        v = None
        if ok(c, d) and c.chunks and c.wall_s and d.chunks_per_s:
            v = (c.chunks / c.wall_s) / d.chunks_per_s
        check("P4", "chunks/s of (c) end to end / chunks/s of (d) model.encode alone", v,
              f">= {P4_MIN}", lambda x: x >= P4_MIN)  # fmt: skip
        # P5: memory, and its growth with the size of the site.
        platform = [x for x in (c, b, c2) if x is not None and x.ok and x.peak_rss]
        peak = max(platform, key=lambda x: x.peak_rss) if platform else None
        v = peak.peak_rss / 1024**3 if peak else None
        largest = f" (largest: {peak.label}, {peak.latency_ms:.0f} ms)" if peak else ""
        check("P5a", f"peak RSS of a `rag run` process tree at N={a_.n}, GB{largest}", v,
              "<= 1.5", lambda x: x * 1024**3 <= P5_MAX_BYTES)  # fmt: skip
        measure = f"peak RSS growth of (c), N={a_.n} -> N={a_.scale_n}"
        if scale is None:
            check("P5b", measure + " (`make bench SCALE=1`)", "not run",
                  f"< {P5_MAX_GROWTH}", None)  # fmt: skip
        else:
            v = div(scale.peak_rss, c.peak_rss) - 1 if ok(scale, c) else None
            check("P5b", measure, v, f"< {P5_MAX_GROWTH}", lambda x: x < P5_MAX_GROWTH)
        # P6: the sensor with a large backlog.
        first = p6.data.get("summary", {}).get("first_tick", {}) if ok(p6) else {}
        check("P6", f"sensor tick with {a_.sensor_files} item files waiting, s",
              first.get("tick_s"), f"<= {P6_MAX_S:.0f}", lambda x: x <= P6_MAX_S)  # fmt: skip
        check("P6b", "runs requested by that tick", first.get("runs_requested"),
              f"<= {P6_MAX_RUNS}", lambda x: x <= P6_MAX_RUNS)  # fmt: skip
        # P7: a re-crawl of an unchanged site. One that timed out still tells how much it
        # re-embedded, and its wall time is a lower bound (a FAIL of P7b stays a FAIL).
        usable = e is not None and (e.ok or e.data.get("timed_out"))
        bound = " (lower bound: (e) timed out)" if usable and not e.ok else ""
        v = e.data.get("reembedded") if usable else None
        check("P7", "chunks re-embedded by (e), the re-crawl of the unchanged site" + bound, v,
              f"{P7_MAX_REEMBED}", lambda x: x <= P7_MAX_REEMBED)  # fmt: skip
        v = div(e.wall_s, c.wall_s) if usable and ok(c) else None
        check("P7b", "(e) re-crawl wall / (c) wall" + bound, v, f"<= {P7_MAX_RATIO}",
              lambda x: x <= P7_MAX_RATIO)  # fmt: skip
        # P9: `make run` on the demo site against the plain script on the same pages.
        p9a, p9c, p11 = res.get("p9a"), res.get("p9c"), res.get("p11")
        v = div(p9c.wall_s, p9a.wall_s) if ok(p9a, p9c) else None
        if p9a is None and p9c is None:
            v = "not run"  # the smoke run
        check("P9", "`rag run` on the demo site wall / the plain script's on the same pages",
              v, f"<= {P9_MAX}", lambda x: x <= P9_MAX)  # fmt: skip
        # P10: what orchestration costs in CPU beyond the work itself: (c)'s whole process
        # trees minus model.encode on the same chunks ((d), model load included in both),
        # the crawl's own CPU (crawl alone) and the page work (the script's extract + chunk).
        v = None
        if ok(c, d, crawl, a) and c.pages:
            t = a.data.get("summary", {}).get("times", {})
            page_work = (t.get("read_extract_s") or 0) + (t.get("chunk_s") or 0)
            rest = c.cpu_s - d.cpu_s - crawl.cpu_s - page_work
            v = rest / c.pages * 1000
        check("P10", "orchestration CPU s per 1,000 items: (c) CPU - (d) encode CPU - crawl "
              "CPU - page work", v, f"<= {P10_MAX_S:.0f}", lambda x: x <= P10_MAX_S)  # fmt: skip
        # P11: the one-partition-per-item design at 100k files (with --scale).
        a11 = self.args
        where = f"{a11.p11_files} item files"
        if p11 is None:
            check("P11", f"sensor tick with {where} (`make bench SCALE=1`)", "not run",
                  f"<= {P11_MAX_TICK_S:.0f}", None)  # fmt: skip
            check("P11b", f"start of one run over {a11.p11_run_partitions} partitions, s",
                  "not run", f"<= {P11_MAX_RUN_START_S:.0f}", None)  # fmt: skip
        else:
            summary = p11.data.get("summary", {}) if ok(p11) else {}
            first = summary.get("first_tick", {})
            registered = summary.get("partitions_registered")
            tick_s = first.get("tick_s") if not first.get("error") else None
            check("P11", f"sensor tick with {where}, s ({registered} partitions registered, "
                  f"error: {first.get('error') or 'none'})", tick_s,
                  f"<= {P11_MAX_TICK_S:.0f}", lambda x: x <= P11_MAX_TICK_S)  # fmt: skip
            check("P11b", f"start of one run over {a11.p11_run_partitions} partitions, s "
                  "(creation + partition resolution; the run process launch adds ~3-6 s)",
                  run_start_s(summary.get("run_subset_events", {})),
                  f"<= {P11_MAX_RUN_START_S:.0f}",
                  lambda x: x <= P11_MAX_RUN_START_S)  # fmt: skip
        # P8: bfloat16 against float32, speed and search results.
        if bf16 is None:
            check("P8", "chunks/s bfloat16 / float32 (model.encode)", "not run",
                  f">= {P8_MIN}", None)  # fmt: skip
            check("P8b", "top-5 results of 5 questions equal, bfloat16 vs float32", "not run",
                  "5 of 5", None)  # fmt: skip
            return
        v = div(bf16.chunks_per_s, f32.chunks_per_s) if ok(bf16, f32) else None
        check("P8", "chunks/s bfloat16 / float32 (model.encode)", v, f">= {P8_MIN}",
              lambda x: x >= P8_MIN)  # fmt: skip
        same = same_order = None
        gaps = []
        if ok(bf16, f32):
            pairs = list(
                zip(f32.data["summary"]["top5"], bf16.data["summary"]["top5"], strict=False)
            )
            same = sum(1 for x, y in pairs if set(x) == set(y)) if pairs else None
            same_order = sum(1 for x, y in pairs if x == y) if pairs else None
            gaps = near_tie_gaps(f32.data["summary"], bf16.data["summary"])
        order = f"; in the same order: {same_order} of 5" if same_order is not None else ""
        if gaps:
            order += (
                "; where they differ, float32 scores the swapped chunks within "
                + ", ".join(f"{g:.4f}" for g in gaps)
                + " of each other"
            )
        check("P8b", "top-5 results of 5 questions equal (as sets), bfloat16 vs float32" + order,
              same, "5 of 5", lambda x: x == 5)  # fmt: skip
        q = res.get("q")
        summary = q.data.get("summary", {}) if ok(q) else {}
        check("S1", "`rag search` p50 from a shell with a warm server running, s",
              summary.get("warm", {}).get("p50_s"), "<= 1", lambda x: x <= 1.0)  # fmt: skip
        check("S1b", "`rag search` without a server (cold start), p50 s",
              summary.get("cold", {}).get("p50_s"), "<= 5", lambda x: x <= 5.0)  # fmt: skip

    # -- output -----------------------------------------------------------------------------
    def shown(self) -> list[Result]:
        """Each result once (the smoke run's overlap (c) is (c) itself)."""
        return list({id(r): r for r in self.results.values()}.values())

    def table(self) -> str:
        lines = [
            "| scenario | latency ms | wall s | CPU s | pages | chunks | chunks/s | Dagster runs "
            "| peak RSS MB | first page -> first embedding s | status |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in self.shown():
            rss = r.peak_rss / MB if r.peak_rss else None
            lines.append(
                f"| {r.label} | {r.latency_ms:.0f} | {fmt(r.wall_s, 1)} | {fmt(r.cpu_s, 1)} | "
                f"{fmt(r.pages)} | {fmt(r.chunks)} | {fmt(r.chunks_per_s, 1)} | {fmt(r.runs)} | "
                f"{fmt(rss, 0)} | {fmt(r.ttfe_s, 1)} | {r.status} |"
            )
        return "\n".join(lines)

    def ratio_table(self) -> str:
        lines = ["| id | measure | value | target | result |", "| --- | --- | ---: | --- | --- |"]
        for x in self.ratios:
            value = x["value"]
            shown = f"{value:.3f}" if isinstance(value, float) else fmt(value)
            lines.append(
                f"| {x['id']} | {x['measure']} | {shown} | {x['target']} | {x['result']} |"
            )
        return "\n".join(lines)

    def notes(self) -> str:
        return "\n".join(
            f"- **{r.label}, {r.latency_ms:.0f} ms**: {r.notes}" for r in self.shown() if r.notes
        )

    def where_time_goes(self) -> str:
        from bench.dagster_profile import markdown

        parts = []
        for r in self.shown():
            prof = r.data.get("profile")
            if r.key not in PLATFORM_DIRS or not prof:
                continue
            phases = dict(r.data.get("phases", {}))
            crawls = [x for x in prof["runs"] if x["lane"] == "crawl"]
            ingest = [x for x in prof["runs"] if x["lane"] == "ingest"]
            if crawls:
                phases["crawl run started"] = crawls[-1]["started"]
                phases["crawl run ended"] = crawls[-1]["ended"]
            if ingest:
                phases["first ingestion run created"] = ingest[0]["created"]
                phases["last ingestion run ended"] = ingest[-1]["ended"]
            phases["rag run exit"] = round(r.wall_s, 1) if r.wall_s else None
            timed = sorted((v, k) for k, v in phases.items() if v is not None)
            label = f"{r.label}, {r.latency_ms:.0f} ms"
            parts.append(markdown(label, prof, {k: v for v, k in timed}))
        return "\n".join(parts)

    def write(self) -> str:
        a = self.args
        head = (
            f"# Benchmark results\n\n`{self.command}` on {self.when}"
            + (
                " (tables re-rendered by `python -m bench --report-only`)"
                if self.rerendered
                else ""
            )
            + f" — N={a.n} pages (seed {a.seed}), "
            f"latency {a.latency_ms:.0f} ms (overlap runs {a.overlap_latency_ms:.0f} ms, "
            f"CRAWL_CONCURRENCY={a.overlap_concurrency or 'default'}), {os.cpu_count()} cores "
            f"({cpu_flags() or 'no native bf16'}), load average at start {self.load_start}, at "
            f"end {self.load_end}; platform at commit {self.version}. What each figure means: "
            f"[bench/README.md](README.md).\n"
        )
        text = "\n".join(
            [
                head,
                "## Scenarios\n",
                self.table(),
                "",
                self.notes(),
                "\n## Ratios and targets\n",
                self.ratio_table(),
                "\n## Where the time goes (from the Dagster event log)\n",
                self.where_time_goes(),
            ]
        )
        a.results.parent.mkdir(parents=True, exist_ok=True)
        a.results.write_text(text + "\n")
        data = {
            "args": {k: str(v) for k, v in vars(a).items()},
            "when": self.when,
            "load_start": self.load_start,
            "load_end": self.load_end,
            "version": self.version,
            "command": self.command,
            "scenarios": {k: _jsonable(asdict(r)) for k, r in self.results.items()},
            "ratios": self.ratios,
        }
        (self.out / "results.json").write_text(json.dumps(data, indent=2, default=str))
        return text

    def plot(self) -> None:
        from bench.plot import overlap_chart

        b, c2, crawl = self.results.get("b"), self.results.get("c2"), self.results.get("crawl")
        series = []
        for r, style in ((c2, "-"), (b, "--")):
            if r is not None and r.data.get("timeline") and Path(r.data["timeline"]).is_file():
                series.append((r.label, Path(r.data["timeline"]), style))
        overlap_chart(
            series,
            self.args.plot,
            title=(
                f"N={self.args.n} pages, {self.args.overlap_latency_ms:.0f} ms per request, "
                f"CRAWL_CONCURRENCY={self.args.overlap_concurrency or 'default'}"
            ),
            crawl_alone_s=crawl.wall_s if crawl is not None and crawl.ok else None,
        )
        print(f"Wrote {self.args.plot}")

    def report(self) -> None:
        self.compute_ratios()
        try:
            self.plot()
        except Exception as exc:  # noqa: BLE001 - the chart is optional (matplotlib: bench extra)
            print(f"overlap chart not drawn: {type(exc).__name__}: {exc}", file=sys.stderr)
        text = self.write()
        print("\n" + text)
        print(f"\nWrote {self.args.results} and {self.out / 'results.json'}")

    # -- the session ------------------------------------------------------------------------
    def main(self) -> int:
        a = self.args
        self.when = f"{dt.datetime.now():%Y-%m-%d %H:%M}"
        try:
            self.prepare()
            lat, olat = a.latency_ms, a.overlap_latency_ms
            self.scenario("p6", f"P6 sensor tick, {a.sensor_files} files", 0, self.run_sensor)
            self.scenario("a", "(a) baseline script", lat, self.run_baseline)
            self.scenario(
                "c", "(c) rag run streaming", lat,
                lambda r: self.rag_run(r, self.site_url, "streaming", a.concurrency),
            )  # fmt: skip
            self.scenario("d", "(d) model.encode alone on (c)'s chunks, default dtype", 0,
                          self.run_encode_only)  # fmt: skip
            self.scenario("q", "S1 rag search, one question", 0, self.run_search_latency)
            if not a.skip_p8:
                other = self.other_dtype()  # (d) has run: its dtype is known
                self.scenario("d_other", f"(d') model.encode alone, {other}", 0,
                              lambda r: self.run_encode_only(r, other))  # fmt: skip
            self.scenario("crawl", "crawl alone (python -m crawler)", olat, self.run_crawl_alone)
            self.scenario(
                "b", "(b) rag run batch", olat,
                lambda r: self.rag_run(r, self.overlap_url, "batch", a.overlap_concurrency),
            )  # fmt: skip
            if self.reuse_streaming:
                self.results["c2"] = self.results["c"]
            else:
                self.scenario(
                    "c2", "(c) rag run streaming", olat,
                    lambda r: self.rag_run(r, self.overlap_url, "streaming", a.overlap_concurrency),
                )  # fmt: skip
            self.scenario("e", "(e) re-crawl of the unchanged site", lat, self.run_recrawl)
            if not a.smoke:  # the smoke run proves the harness; P9 is two more full runs
                self.scenario(
                    "p9a", "(P9) baseline script on the demo site", 0,
                    lambda r: self.run_baseline(r, self.demo_url, "p9_demo_baseline"),
                )  # fmt: skip
                self.scenario(
                    "p9c", "(P9) rag run on the demo site", 0,
                    lambda r: self.rag_run(r, self.demo_url, "streaming", None),
                )  # fmt: skip
            if a.scale:
                self.scenario("scale", f"(c) rag run streaming, N={a.scale_n}", lat, self.run_scale)
                label = f"P11 {a.p11_files} item files, one run over {a.p11_run_partitions}"
                self.scenario("p11", label + " partitions", 0, self.run_partition_scale)
        finally:
            self.registry.stop_all()
            for server in self.servers:
                with contextlib.suppress(Exception):
                    server.stop()
        self.load_end = fmt_load()
        self.report()
        return 0

    def report_only(self) -> int:
        """Tables and chart again from --out/results.json (profiles re-read from the instances)."""
        data = read_json(self.out / "results.json")
        if not data:
            print(f"no {self.out / 'results.json'}: run the benchmark first", file=sys.stderr)
            return 2
        saved = data["args"]
        for name in ("n", "seed", "sensor_files", "scale_n"):
            setattr(self.args, name, int(saved[name]))
        for name in ("latency_ms", "overlap_latency_ms"):
            setattr(self.args, name, float(saved[name]))
        oc = saved.get("overlap_concurrency")
        self.args.overlap_concurrency = int(oc) if oc and oc != "None" else None
        names = {f.name for f in fields(Result)}
        for key, raw in data["scenarios"].items():
            r = Result(**{k: v for k, v in raw.items() if k in names})
            if key == "c2" and raw == data["scenarios"].get("c"):
                r = self.results["c"]
            elif key in PLATFORM_DIRS and "started" in r.data:
                self.analyse_platform(r)
            self.results[key] = r
        self.when = data.get("when", "?")
        self.load_start = data.get("load_start", "?")
        self.load_end = data.get("load_end", "?")
        self.version = data.get("version", "not recorded")
        self.command = data.get("command", f"python -m bench --n {self.args.n}")
        self.rerendered = True
        self.report()
        return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--n", type=int, default=500, help="pages of the generated site")
    add("--seed", type=int, default=0)
    add("--latency-ms", type=float, default=0.0, help="per request, for (a) (c) (e)")
    add("--overlap-latency-ms", type=float, default=200.0,
        help="per request: crawl alone, (b), the second (c); P2, overlap.png")  # fmt: skip
    add("--concurrency", type=int, default=None,
        help="CRAWL_CONCURRENCY of (a) (c) (e) (default: the platform's)")  # fmt: skip
    add("--overlap-concurrency", type=int, default=2,
        help="CRAWL_CONCURRENCY of the overlap runs: a polite crawl of a slow site")  # fmt: skip
    add("--sensor-files", type=int, default=10_000, help="item files waiting, P6")
    add("--scale", action="store_true", help="also run (c) at --scale-n pages (P5b)")
    add("--scale-n", type=int, default=5000)
    add("--p11-files", type=int, default=100_000, help="item files for P11 (with --scale)")
    add("--p11-run-partitions", type=int, default=10_000, help="partitions of P11's one run")
    add("--skip-p8", action="store_true", help="skip the bfloat16 encode (P8)")
    add("--smoke", action="store_true",
        help="quick check: the overlap figures come from (c) at --latency-ms")  # fmt: skip
    add("--report-only", action="store_true",
        help="rewrite the tables and chart from --out/results.json, running nothing")  # fmt: skip
    add("--out", type=Path, default=BENCH / "out", help="data dirs, logs, results.json")
    add("--results", type=Path, default=None, help="default: bench/RESULTS.md")
    add("--plot", type=Path, default=None, help="default: bench/overlap.png")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.overlap_latency_ms = args.latency_ms
        args.overlap_concurrency = args.concurrency
    args.results = (args.results or (BENCH / "RESULTS.md")).resolve()
    args.plot = (args.plot or (BENCH / "overlap.png")).resolve()
    bench = Bench(args)
    return bench.report_only() if args.report_only else bench.main()


if __name__ == "__main__":
    raise SystemExit(main())
