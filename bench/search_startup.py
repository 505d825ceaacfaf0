"""How long one ``rag search`` takes from a shell, and its peak memory, three ways.

    python -m bench.search_startup --data-dir data --runs 5 --json out.json

- ``warm``: a warm embedding server runs and announces itself in ``<data-dir>`` (as under
  ``rag run`` / ``make dev``); ``rag search`` sends it the question.
- ``cold``: no server; ``rag search`` embeds the question itself (numpy encoder).
- ``torch``: what ``rag search`` did before: the Dagster embedder resource, torch and
  sentence-transformers loaded for one question (one run: it is slow).

Each figure is a fresh ``rag search`` process, timed from start to exit; peak RSS is that
process's own (``wait4``). Targets (issue 16): warm p50 <= 1 s, cold <= 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

QUESTION = "how do I install on Windows"
RAG = Path(sys.executable).parent / "rag"
OLD_PATH = (
    "import sys\n"
    "from rag_app.search import search\n"
    "from rag_core.settings import load_settings\n"
    "from resources.embedder import EmbedderResource\n"
    "s = load_settings()\n"
    "hits = search(s, sys.argv[1], 5, EmbedderResource.from_settings(s).get_embedder())\n"
    "print(len(hits))\n"
)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds of one process run to completion.

    CPU seconds (user + system) hardly move when other work shares the machine: on an idle
    machine the wall time of this single-threaded work comes close to them."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def measure(cmd: list[str], env: dict[str, str], runs: int) -> dict:
    samples = [timed(cmd, env) for _ in range(runs)]
    walls = [w for w, _, _ in samples]
    return {
        "runs": runs,
        "p50_s": round(statistics.median(walls), 3),
        "max_s": round(max(walls), 3),
        "walls_s": [round(w, 3) for w in walls],
        "cpu_p50_s": round(statistics.median(c for _, _, c in samples), 3),
        "peak_rss_mb": round(max(r for _, r, _ in samples)),
    }


def start_server(data_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    from rag_core.server_state import read_state, state_path
    from rag_core.settings import TOKEN_ENV, new_token

    # As a session starts it: with a fresh token, which rag search reads from the state file.
    server = subprocess.Popen(
        [sys.executable, "-m", "rag_app.embedding_server", "--state-file",
         str(state_path(data_dir))],
        env={**env, TOKEN_ENV: new_token()}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while read_state(state_path(data_dir)) is None:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the embedding server did not start")
        time.sleep(0.2)
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search_startup", description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True, help="an ingested DATA_DIR")
    parser.add_argument("--duckdb", type=Path, help="default: <data-dir>/rag.duckdb")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    data_dir = args.data_dir.resolve()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBEDDING_SERVER_URL")}
    env.update(DATA_DIR=str(data_dir), DUCKDB_PATH=str(args.duckdb or data_dir / "rag.duckdb"))
    search = [str(RAG), "search", QUESTION]
    load = [round(x, 2) for x in os.getloadavg()]
    out: dict = {"question": QUESTION, "load_start": load}
    out["cold"] = measure(search, env, args.runs)
    server = start_server(data_dir, env)
    try:
        timed(search, env)  # the server's first request pays its own warm-up
        out["warm"] = measure(search, env, args.runs)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    if not args.skip_torch:
        out["torch"] = measure([sys.executable, "-c", OLD_PATH, QUESTION], env, 1)
    out["load_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
