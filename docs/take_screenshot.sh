#!/usr/bin/env bash
# Screenshots of the Dagster UI: the global asset lineage -> docs/asset-lineage.png, and the
# `items` partitions of the embeddings asset (readable keys) -> docs/partitions.png.
#
# By default it builds a small demo instance in a temporary folder (nothing in data/ is
# touched): the bundled demo site is served on a free local port, crawled for real
# (crawled_pages, PAGES pages) and ingested in-process (raw_items -> documents -> chunks
# -> embeddings and the embedding checks, as the ingest_items job runs them). With
# DAGSTER_HOME set it shows that instance instead. Then dagster-webserver runs on
# 127.0.0.1 and Debian's headless Chromium (`apt-get install -y chromium`) photographs
# the "Lineage" page with both asset groups expanded.
#
# Usage: docs/take_screenshot.sh [lineage.png [partitions.png]]
#        (env: DAGSTER_HOME, PAGES, BUDGET_MS, SCALE)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
OUT=$(realpath -m "${1:-docs/asset-lineage.png}")
PARTITIONS_OUT=$(realpath -m "${2:-docs/partitions.png}")
PAGES=${PAGES:-12}
BUDGET_MS=${BUDGET_MS:-15000}
SCALE=${SCALE:-2}  # device pixels per CSS pixel: a sharp 3840x2160 picture
command -v chromium >/dev/null || { echo "chromium not found: apt-get install -y chromium" >&2; exit 1; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill -- -"$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
set -m  # every background process gets its own process group, so cleanup stops its children too

if [ -z "${DAGSTER_HOME:-}" ]; then
  export DATA_DIR=$WORK/data DUCKDB_PATH=$WORK/data/rag.duckdb DAGSTER_HOME=$WORK/data/dagster_home
  export EMBEDDING_SERVER=false USE_NEO4J=false
  mkdir -p "$DAGSTER_HOME"
  ln -s "$ROOT/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
  SITE_PORT=$(free_port)
  "$PY" -m http.server "$SITE_PORT" --bind 127.0.0.1 --directory data/demo_site >/dev/null 2>&1 &
  PIDS+=($!)
  sleep 1
  echo "building a demo instance in a temporary folder ($PAGES pages)"
  START_URLS=http://127.0.0.1:$SITE_PORT/ CLOSESPIDER_PAGECOUNT=$PAGES \
    "$PY" - >"$WORK/build.log" 2>&1 <<'PYTHON' || { tail -n 40 "$WORK/build.log" >&2; exit 1; }
import dagster as dg

from rag_assets.checks import embedding_checks
from rag_assets.crawl import crawled_pages
from rag_assets.definitions import build_definitions
from rag_assets.ingest import chunks, documents, embeddings, raw_items
from rag_core.settings import load_settings

settings = load_settings()
resources = build_definitions(settings).resources
with dg.DagsterInstance.get() as instance:
    assert dg.materialize([crawled_pages], instance=instance, resources=resources).success
    keys = [key for key, _ in resources["raw_store"].scan()]  # oldest first, as the sensor
    instance.add_dynamic_partitions("items", keys)
    tags = {
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1],
    }
    ingest = [raw_items, documents, chunks, embeddings, *embedding_checks]
    assert dg.materialize(ingest, instance=instance, resources=resources, tags=tags).success
PYTHON
fi
[ -f "$DAGSTER_HOME/dagster.yaml" ] || { echo "no instance at $DAGSTER_HOME" >&2; exit 1; }

PORT=$(free_port)
LOG=$WORK/webserver.log
.venv/bin/dagster-webserver -w workspace.yaml -h 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
PIDS+=($!)
QUERY='{"query":"{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"}'
for i in $(seq 120); do
  curl -sf -H 'Content-Type: application/json' -d "$QUERY" "http://127.0.0.1:$PORT/graphql" \
    | grep -q '"loadStatus": *"LOADED"' && break
  [ "$i" = 120 ] && { cat "$LOG" >&2; exit 1; }
  sleep 0.5
done

# The "Lineage" page (global asset lineage) with both groups expanded: `expanded` lists
# group ids, `global@global:<group>` in Dagster 1.13 (collapsed groups otherwise).
URL="http://127.0.0.1:$PORT/asset-groups?expanded=global@global:crawl,global@global:ingestion"
shoot() {  # shoot URL OUTPUT WIDTH HEIGHT
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$WORK/chromium" --window-size="$3,$4" --force-device-scale-factor="$SCALE" \
    --hide-scrollbars --virtual-time-budget="$BUDGET_MS" --screenshot="$2" "$1" 2>/dev/null
  echo "wrote $2"
}
shoot "$URL" "$OUT" 1920 1080
# The embeddings asset's partitions: the list of `items` keys (host/path-hash) beside the
# selected partition's materialisation.
KEYS_QUERY='{"query":"{ assetNodes(assetKeys: [{path: [\"embeddings\"]}]) { partitionKeys } }"}'
PARTITION=$(curl -sf -H 'Content-Type: application/json' -d "$KEYS_QUERY" \
  "http://127.0.0.1:$PORT/graphql" | "$PY" -c '
import json, sys, urllib.parse
keys = json.load(sys.stdin)["data"]["assetNodes"][0]["partitionKeys"]
pick = next((k for k in keys if "install" in k), keys[-1] if keys else "")
print(urllib.parse.quote(pick, safe=""))')
shoot "http://127.0.0.1:$PORT/assets/embeddings?view=partitions&partition=$PARTITION" \
  "$PARTITIONS_OUT" 1600 900
