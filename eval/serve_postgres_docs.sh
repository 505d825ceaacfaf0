#!/usr/bin/env bash
# Install the PostgreSQL 15 manual (Debian package postgresql-doc-15, ~1,170 HTML pages) and
# serve it on loopback, for `rag run` + `rag eval eval/postgres_questions.json` and make bench.
#   eval/serve_postgres_docs.sh [PORT]      (default 8770; foreground, Ctrl-C stops it)
set -euo pipefail
PORT="${1:-8770}"
HTML=/usr/share/doc/postgresql-doc-15/html
if [ ! -f "$HTML/index.html" ]; then
    apt-get update
    apt-get install -y postgresql-doc-15
fi
cd "$(dirname "$0")/.."
echo "PostgreSQL 15 manual on http://127.0.0.1:$PORT/index.html"
echo "ingest it: START_URLS=http://127.0.0.1:$PORT/index.html DATA_DIR=/tmp/pg DUCKDB_PATH=/tmp/pg/rag.duckdb .venv/bin/rag run"
exec .venv/bin/python -m http.server "$PORT" --bind 127.0.0.1 --directory "$HTML"
