"""The Dagster UI's own GraphQL API, served by a real dagster-webserver, over ingested data.

Items are ingested in-process into an instance in a temporary DAGSTER_HOME; then a real
``dagster-webserver`` subprocess loads the project's workspace.yaml on that instance, and
the test reads what the UI shows through ``POST /graphql``: the asset lineage, the
``items`` partitions and which of them are materialised.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import psutil
import pytest

from rag_app.instance import open_instance
from rag_core.constants import ITEMS_PARTITIONS
from tests.helpers import free_port, materialize_range, paragraphs, settings_for, write_page

ROOT = Path(__file__).resolve().parents[1]
WEBSERVER = ROOT / ".venv" / "bin" / "dagster-webserver"
LOAD_TIMEOUT_S = 45
LINEAGE = ["crawled_pages", "raw_items", "documents", "chunks", "embeddings"]

WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
    ... on PythonError { message }
  }
}
"""

ASSET_GRAPH_QUERY = """
query AssetGraph {
  assetNodes {
    assetKey { path }
    groupName
    kinds
    isPartitioned
    dependencyKeys { path }
    dependedByKeys { path }
    partitionDefinition {
      type
      dimensionTypes { type dynamicPartitionsDefinitionName }
    }
  }
}
"""

PARTITIONS_QUERY = """
query ItemPartitions($assetKeys: [AssetKeyInput!], $partitions: [String!]) {
  assetNodes(assetKeys: $assetKeys) {
    assetKey { path }
    partitionKeys
    partitionStats { numPartitions numMaterialized numFailed numMaterializing }
    assetPartitionStatuses {
      __typename
      ... on DefaultPartitionStatuses {
        materializedPartitions
        unmaterializedPartitions
        failedPartitions
        materializingPartitions
      }
    }
    latestMaterializationByPartition(partitions: $partitions) { partition runId }
  }
}
"""


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"{base}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        payload = json.loads(response.read())
    assert not payload.get("errors"), payload["errors"]
    return payload["data"]


def wait_until_loaded(base: str, proc: subprocess.Popen, log: Path) -> None:
    """Wait for the webserver to answer and for the `rag` code location to be loaded."""
    deadline = time.monotonic() + LOAD_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster-webserver exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=2) as response:
                assert json.loads(response.read())["dagster_webserver_version"]
            workspace = graphql(base, WORKSPACE_QUERY)["workspaceOrError"]
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            last = repr(exc)
            time.sleep(0.25)
            continue
        assert workspace["__typename"] == "Workspace", workspace
        entries = {e["name"]: e for e in workspace["locationEntries"]}
        entry = entries.get("rag")
        if entry and entry["loadStatus"] == "LOADED":
            location = entry["locationOrLoadError"]
            assert location["__typename"] == "RepositoryLocation", location
            return
        last = f"workspace: {entries}"
        time.sleep(0.25)
    pytest.fail(
        f"code location not loaded in {LOAD_TIMEOUT_S}s ({last}):\n{log.read_text()[-3000:]}"
    )


def stop_tree(proc: subprocess.Popen) -> None:
    """Stop the webserver and everything it started (its code server), then make sure."""
    try:
        family = [proc, *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    others = [p for p in family if isinstance(p, psutil.Process)]
    _, alive = psutil.wait_procs(others, timeout=10)
    for child in alive:
        child.kill()


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """Three pages ingested through all four stages, a fourth registered but not ingested."""
    tmp_path = tmp_path_factory.mktemp("graphql")
    settings = settings_for(tmp_path / "data", EMBEDDING_SERVER="false", USE_NEO4J="false")
    raw = settings.raw_dir
    keys = [
        write_page(
            raw, "http://docs.test/install/windows.html", "Install", paragraphs("installing", 6)
        ),
        write_page(raw, "http://docs.test/faq", "FAQ", "<ul><li>Is it free? Yes.</li></ul>"),
        write_page(raw, "http://docs.test/config", "Config", paragraphs("configuring", 3)),
    ]
    pending = write_page(raw, "http://docs.test/later", "Later", paragraphs("waiting", 2))
    home = settings.dagster_home
    home.mkdir(parents=True)
    (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
    with open_instance(home) as instance:
        result = materialize_range(instance, settings, keys)
        assert result.success
        # Registered, never materialised.
        instance.add_dynamic_partitions(ITEMS_PARTITIONS, [pending])
        registered = instance.get_dynamic_partitions(ITEMS_PARTITIONS)
    assert registered == [*keys, pending]
    return settings, keys, pending, result.run_id


@pytest.fixture(scope="module")
def webserver(ingested):
    settings = ingested[0]
    tmp_path = settings.data_dir.parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER")}
    env.update(
        DAGSTER_HOME=str(settings.dagster_home),
        DATA_DIR=str(settings.data_dir),
        DUCKDB_PATH=str(settings.duckdb_path),
        EMBEDDING_SERVER="false",
        USE_NEO4J="false",  # the definitions the test expects: no graph sink assets
    )
    port = free_port()
    log = tmp_path / "webserver.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(WEBSERVER), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the whole tree is stopped at the end
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_loaded(base, proc, log)
        yield base
    finally:
        stop_tree(proc)


def test_ui_graphql_shows_lineage_partitions_and_materialisations(ingested, webserver):
    _, keys, pending, run_id = ingested

    # The asset graph: one chain crawled_pages -> raw_items -> documents -> chunks -> embeddings.
    nodes = {
        "/".join(n["assetKey"]["path"]): n
        for n in graphql(webserver, ASSET_GRAPH_QUERY)["assetNodes"]
    }
    # The crawl group also holds removed_pages (pruning); the ingestion group is the chain.
    groups = {name: n["groupName"] for name, n in nodes.items()}
    assert groups == {"crawled_pages": "crawl", "removed_pages": "crawl"} | {
        name: "ingestion" for name in LINEAGE[1:]
    }
    for upstream, downstream in zip(LINEAGE, LINEAGE[1:], strict=False):
        assert [k["path"] for k in nodes[downstream]["dependencyKeys"]] == [[upstream]]
    for upstream, downstream in zip(LINEAGE[1:], LINEAGE[2:], strict=False):
        assert [k["path"] for k in nodes[upstream]["dependedByKeys"]] == [[downstream]]
    assert sorted(k["path"][0] for k in nodes["crawled_pages"]["dependedByKeys"]) == [
        "raw_items",
        "removed_pages",
    ]
    assert nodes["crawled_pages"]["dependencyKeys"] == []
    assert nodes["embeddings"]["dependedByKeys"] == []
    assert not nodes["crawled_pages"]["isPartitioned"]
    assert {k: set(nodes[k]["kinds"]) for k in LINEAGE} == {
        "crawled_pages": {"scrapy", "json"},
        "raw_items": {"json", "duckdb"},
        "documents": {"python", "duckdb"},
        "chunks": {"python", "duckdb"},
        "embeddings": {"pytorch", "duckdb"},
    }
    for name in LINEAGE[1:]:
        node = nodes[name]
        assert node["groupName"] == "ingestion"
        assert node["isPartitioned"]
        assert node["partitionDefinition"]["type"] == "DYNAMIC"
        assert node["partitionDefinition"]["dimensionTypes"] == [
            {"type": "DYNAMIC", "dynamicPartitionsDefinitionName": ITEMS_PARTITIONS}
        ]

    # The item partitions, in registration order, and their status per asset.
    found = graphql(
        webserver,
        PARTITIONS_QUERY,
        {
            "assetKeys": [{"path": [name]} for name in LINEAGE[1:]],
            "partitions": [*keys, pending],
        },
    )["assetNodes"]
    assert sorted(n["assetKey"]["path"][0] for n in found) == sorted(LINEAGE[1:])
    for node in found:
        name = node["assetKey"]["path"][0]
        assert node["partitionKeys"] == [*keys, pending], name
        assert node["partitionStats"] == {
            "numPartitions": 4,
            "numMaterialized": 3,
            "numFailed": 0,
            "numMaterializing": 0,
        }, name
        statuses = node["assetPartitionStatuses"]
        assert statuses["__typename"] == "DefaultPartitionStatuses", name
        assert sorted(statuses["materializedPartitions"]) == sorted(keys), name
        assert statuses["unmaterializedPartitions"] == [pending], name
        assert statuses["failedPartitions"] == [] and statuses["materializingPartitions"] == []
        # Each ingested partition's latest materialisation is the run that ingested it.
        latest = node["latestMaterializationByPartition"]
        assert [(e or {}).get("partition") for e in latest] == [*keys, None], name
        assert {e["runId"] for e in latest if e} == {run_id}, name


FIND_PARTITION_QUERY = """
query FindPartition($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    __typename
    ... on AssetNode {
      partitionKeyConnection(limit: 1000, ascending: true) { results hasMore }
    }
  }
}
"""

MATERIALIZATION_QUERY = """
query PartitionMaterialization($assetKey: AssetKeyInput!, $partitions: [String!]) {
  assetOrError(assetKey: $assetKey) {
    ... on Asset {
      assetMaterializations(partitions: $partitions, limit: 1) {
        partition
        metadataEntries { label ... on TextMetadataEntry { text } }
      }
    }
  }
}
"""


def test_a_page_is_found_by_a_word_of_its_path(ingested, webserver):
    """What a user does in the UI's partition list: type a word of the page's path."""
    settings, keys, _, _ = ingested
    found = graphql(webserver, FIND_PARTITION_QUERY, {"assetKey": {"path": ["embeddings"]}})
    node = found["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    listed = node["partitionKeyConnection"]["results"]
    assert not node["partitionKeyConnection"]["hasMore"]
    # The UI filters the listed keys by the text typed; the keys carry host and path.
    matches = [key for key in listed if "windows" in key]
    assert matches == [keys[0]]
    assert matches[0].startswith("docs.test/install/windows-")
    assert [k for k in listed if "faq" in k] == [keys[1]]
    # The partition's materialisation is the page: its raw_items row has that item_id.
    mat = graphql(
        webserver,
        MATERIALIZATION_QUERY,
        {"assetKey": {"path": ["raw_items"]}, "partitions": matches},
    )["assetOrError"]["assetMaterializations"]
    assert [m["partition"] for m in mat] == matches
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        row = con.execute("SELECT url FROM raw_items WHERE item_id = ?", [matches[0]]).fetchone()
    assert row == ("http://docs.test/install/windows.html",)
