"""The ``rag`` command: run the platform, and small tools around it."""

from __future__ import annotations

import argparse
import json
import sys

from rag_core.settings import SettingsError, apply_overrides, env_example, load_settings


def _cmd_run(args: argparse.Namespace) -> int:
    from rag_app.runner import Reporter, RunFailedError, next_commands, run_pipeline
    from rag_app.session import SessionInterruptedError
    from rag_core.redact import mask_secrets

    overrides = {}
    if args.mode:
        overrides["PIPELINE_MODE"] = args.mode
    if args.start_url:
        overrides["START_URLS"] = ",".join(args.start_url)
    if args.max_pages is not None:
        overrides["CLOSESPIDER_PAGECOUNT"] = str(args.max_pages)
    if args.confirm_prune:
        overrides["PRUNE_CONFIRM"] = "true"
    settings = apply_overrides(overrides)
    if settings.deployment == "distributed":
        # `rag run` starts the local profile's own daemon and SQLite instance; the distributed
        # head is started as the README's "Scale out" section says.
        raise SettingsError(
            "DEPLOYMENT=distributed is not valid for `rag run`: DEPLOYMENT accepts local here; "
            "start the distributed daemon and workers as in the README (Scale out)"
        )
    print(f"rag run: mode={settings.pipeline_mode}, data in {settings.data_dir}", flush=True)
    try:
        summary = run_pipeline(settings, Reporter(timeline=args.timeline))
    except RunFailedError as exc:
        print(f"rag run failed: {mask_secrets(str(exc))}", file=sys.stderr)
        return 1
    except SessionInterruptedError as exc:
        print(f"rag run: {exc}; every process of the session stopped", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("rag run: interrupted; every process of the session stopped", file=sys.stderr)
        return 130
    print("Summary:")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    if args.json_summary:
        with open(args.json_summary, "w") as handle:
            json.dump(summary, handle, indent=2)
    if summary.get("start_failures"):
        failed = "; ".join(f"{url} ({why})" for url, why in summary["start_failures"].items())
        print(
            f"rag run failed: the crawl's start URL(s) failed: {failed}. Nothing was pruned.",
            file=sys.stderr,
        )
        return 1
    if summary["crawl_status"] != "SUCCESS":
        print(f"rag run failed: the crawl run ended {summary['crawl_status']}", file=sys.stderr)
        return 1
    if summary.get("prune_refused"):
        print(f"rag run failed: {summary['prune_refused']}", file=sys.stderr)
        return 1
    if summary["failed_runs"]:
        print(f"rag run failed: {summary['failed_runs']} ingestion run(s) failed", file=sys.stderr)
        return 1
    print("Next:")
    for line in next_commands(settings):
        print(f"  {line}")
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    import subprocess

    from rag_app.metrics import metrics_exporter
    from rag_app.runner import (
        BIN,
        RunFailedError,
        prepare_instance,
        session,
        start_embedding_server,
        wait_for_embedding_server,
    )
    from rag_app.session import SessionInterruptedError
    from rag_core.settings import PROJECT_ROOT, TOKEN_ENV, child_environment, new_token

    settings = load_settings()
    try:
        with session(settings, "rag dev") as services:
            # Whatever ends this block, the session stops every process it started.
            prepare_instance(settings)
            overrides = {}
            if settings.embedding_server and not settings.embedding_server_url:
                token = new_token()
                url = start_embedding_server(settings, services, token)
                wait_for_embedding_server(url, services, token)
                overrides.update({"EMBEDDING_SERVER_URL": url, TOKEN_ENV: token})
                print(f"warm embedding model at {url}")
            cmd = [
                str(BIN / "dagster"),
                "dev",
                "-w",
                "workspace.yaml",
                # 127.0.0.1 unless asked: the UI has no authentication of its own.
                "-h",
                args.host,
                "-p",
                str(args.port),
            ]
            env = services.environment(child_environment(settings, **overrides))
            # In the foreground, on this terminal; on a signal the session stops it and
            # everything it started (they carry the session's id in their environment).
            with metrics_exporter(settings):
                return subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env).wait()
    except RunFailedError as exc:
        print(f"rag dev: {exc}", file=sys.stderr)
        return 1
    except SessionInterruptedError as exc:
        print(f"rag dev: {exc}; every process of the session stopped", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from rag_app.status import (
        crawl_refusals,
        dagster_status,
        describe_coverage,
        index_coverage,
        legacy_warning,
        prune_status,
        recent_errors,
        store_counts,
    )
    from rag_core.fingerprint import settings_fingerprint
    from rag_core.redact import mask_value

    settings = load_settings()
    counts = store_counts(settings.raw_dir, settings.duckdb_path)
    errors = recent_errors(settings.duckdb_path) if args.errors else None
    refused = crawl_refusals(settings.crawl_state_dir) if args.errors else None
    report = {
        "counts": counts.as_dict(),
        "dagster": dagster_status(settings.dagster_home),
        "prune": prune_status(settings.raw_dir),
        "index": index_coverage(
            settings.duckdb_path, settings_fingerprint(settings), counts.files
        ),
    }
    legacy = legacy_warning(settings.raw_dir)
    if legacy:
        report["warning"] = legacy
    if errors is not None:
        report["errors"] = errors
        report["crawl_refused"] = refused
    report = mask_value(report)
    errors = report.get("errors")
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    c = counts
    print(
        f"Files={c.files}, Docs={c.documents}, Chunks={c.chunks}, "
        f"Embeddings={c.embeddings}, Errors={c.errors}"
    )
    dag = report["dagster"]
    if dag.get("instance"):
        runs = ", ".join(f"{k.lower()} {v}" for k, v in sorted(dag["runs"].items())) or "none"
        print(f"Partitions: {dag['partitions']} registered, {dag['partitions_embedded']} embedded")
        print(f"Runs: {runs} ({dag['runs_in_flight']} in flight)")
    else:
        print(f"No Dagster instance yet at {settings.dagster_home}")
    print(describe_coverage(report["index"]))
    prune = report["prune"]
    if prune["pending_removals"]:
        print(f"Removals pending: {prune['pending_removals']}")
    if prune["refused"]:
        print(prune["refused"])
    if legacy:
        print(f"Warning: {legacy}")
    if errors is not None:
        if not errors:
            print("No errors recorded.")
        for err in errors:
            print(f"{err['item_id']}  {err['stage']:<10} {err['url'] or '-'}\n    {err['error']}")
        refused = report["crawl_refused"]
        if refused["count"]:
            print(
                f"The last crawl refused {refused['count']} response(s) from internal addresses "
                "(ALLOW_PRIVATE_NETWORKS=true allows them):"
            )
            for url in refused["urls"]:
                print(f"  refused  {url}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    import os

    # Before numpy loads: one question's small matrix products run fastest on one thread, and
    # OpenBLAS's thread pool only adds start-up and contention (0.01 s against 0.4-1 s measured
    # on a busy 2-core machine; bench/search_startup.py).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from rag_app.search import SearchError, graph_context, search

    settings = load_settings()
    try:
        hits = search(
            settings,
            args.question,
            args.k,
            mode=args.mode,
            by_page=args.by_page,
            url_prefix=args.url_prefix,
            title=args.title,
        )
        graph = graph_context(settings, hits) if args.graph else {}
    except SearchError as exc:
        print(f"search: {exc}", file=sys.stderr)
        return 1
    if args.json:
        rows = [hit.as_dict() | ({"graph": graph.get(hit.chunk_id)} if args.graph else {})
                for hit in hits]  # fmt: skip
        print(json.dumps(rows, indent=2))
        return 0
    _print_reindex_note(settings)
    if not hits:
        print("No results.")
    for hit in hits:
        print(f"{hit.rank}. [{hit.score:.3f}] {hit.title}  <{hit.url}>")
        if hit.heading:
            print(f"   § {hit.heading}")
        print(f"   {hit.snippet()}")
        if args.graph:
            _print_graph(graph.get(hit.chunk_id))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from rag_app.evaluation import QuestionFileError, evaluate, format_table, load_questions
    from rag_app.search import MODES, SearchError

    settings = load_settings()
    try:
        questions = load_questions(args.questions)
        results = evaluate(settings, questions, tuple(args.mode or MODES))
    except (QuestionFileError, SearchError) as exc:
        print(f"eval: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(f"{args.questions}: {len(questions)} questions, store {settings.duckdb_path}")
        print(format_table(results))
        if args.misses:
            for r in results:
                for miss in r.misses:
                    print(f"[{r.mode}] rank {miss['rank']}: {miss['q']}\n    top: {miss['top']}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from rag_app.serve import serve

    return serve(load_settings(), args.host, args.port)


def _print_reindex_note(settings) -> None:
    """While a re-index is under way, say which pages search serves."""
    from rag_app.status import describe_coverage, index_coverage, item_keys_on_disk
    from rag_core.fingerprint import settings_fingerprint

    files = len(item_keys_on_disk(settings.raw_dir))
    coverage = index_coverage(settings.duckdb_path, settings_fingerprint(settings), files)
    if coverage["pages_other"]:
        print(describe_coverage(coverage), file=sys.stderr)


def _print_graph(context: dict | None) -> None:
    if context is None:
        print("   (not in the graph yet)")
        return
    for side in ("previous", "next"):
        chunk = context.get(side)
        if chunk:
            text = " ".join(chunk["text"].split())[:120]
            print(f"   {side} chunk #{chunk['chunk_index']}: {text}")
    for page in context.get("linked_from", []):
        print(f"   linked from: {page['title']} <{page['url']}>")


def _cmd_env_example(args: argparse.Namespace) -> int:
    sys.stdout.write(env_example())
    return 0


def _cmd_settings_table(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rag_core.settings import settings_table, with_settings_table

    if not args.readme:
        sys.stdout.write(settings_table())
        return 0
    readme = Path(args.readme)
    readme.write_text(with_settings_table(readme.read_text()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="rag", description="RAG ingestion platform on Dagster")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="crawl and ingest end to end (starts a Dagster daemon; waits until done)"
    )
    run.add_argument(
        "--mode", choices=["streaming", "batch"], help="PIPELINE_MODE (default: streaming)"
    )
    run.add_argument("--start-url", action="append", metavar="URL", help="START_URLS (repeatable)")
    run.add_argument(
        "--max-pages", type=int, metavar="N", help="CLOSESPIDER_PAGECOUNT (0 = no limit)"
    )
    run.add_argument(
        "--confirm-prune",
        action="store_true",
        help="allow this run's prune to remove more than PRUNE_MAX_FRACTION of the pages",
    )
    run.add_argument("--json-summary", metavar="PATH", help="also write the summary as JSON")
    run.add_argument(
        "--timeline", metavar="PATH", help="write every progress sample as CSV (for charts)"
    )
    run.set_defaults(func=_cmd_run)
    status = sub.add_parser(
        "status", help="progress read from DuckDB and the Dagster instance (true after a crash)"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--errors", action="store_true", help="list failures by item and stage")
    status.set_defaults(func=_cmd_status)
    search = sub.add_parser("search", help="semantic search over the stored chunks")
    search.add_argument("question")
    search.add_argument("-k", type=int, default=5, help="number of results (default 5)")
    search.add_argument("--json", action="store_true", help="machine-readable output")
    search.add_argument(
        "--graph",
        action="store_true",
        help="also show each hit's neighbouring chunks and the pages linking to it (graph sink)",
    )
    search.add_argument(
        "--mode",
        choices=["hybrid", "vector", "keyword"],
        default="hybrid",
        help="hybrid (default, best measured): BM25 and vectors fused by reciprocal rank; "
        "vector: cosine similarity; keyword: BM25 only",
    )
    search.add_argument("--by-page", action="store_true", help="only each page's best chunk")
    search.add_argument("--url-prefix", default="", help="only pages whose URL starts with this")
    search.add_argument("--title", default="", help="only pages whose title contains this")
    search.set_defaults(func=_cmd_search)
    ev = sub.add_parser(
        "eval", help="recall@1, recall@5 and MRR@10 of a question file, for each search mode"
    )
    ev.add_argument("questions", help='JSON: {"questions": [{"q": ..., "answers": [URL globs]}]}')
    ev.add_argument(
        "--mode",
        action="append",
        choices=["hybrid", "vector", "keyword"],
        help="evaluate only this mode (repeatable; default: every mode)",
    )
    ev.add_argument("--json", action="store_true", help="machine-readable output")
    ev.add_argument("--misses", action="store_true", help="list questions not answered at rank 1")
    ev.set_defaults(func=_cmd_eval)
    srv = sub.add_parser("serve", help="HTTP search API and page: GET /search?q=&k=&mode=")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8780, help="port (default 8780)")
    srv.set_defaults(func=_cmd_serve)
    dev = sub.add_parser("dev", help="the Dagster UI (dagster dev) with a warm embedding model")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(func=_cmd_dev)
    env = sub.add_parser("env-example", help="print every setting with its default")
    env.set_defaults(func=_cmd_env_example)
    table = sub.add_parser(
        "settings-table", help="print the README's settings table (markdown) from the declarations"
    )
    table.add_argument(
        "--readme", metavar="PATH", help="rewrite the table between the markers in this file"
    )
    table.set_defaults(func=_cmd_settings_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rag`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
