"""The Neo4j graph sink against a real Bolt server (ArcadeDB), fed by real ingestion runs.

One ArcadeDB server for the session; one ingested site for the module. Every test that
changes the site leaves the graph equal to DuckDB again, and every assertion about the
graph is checked against DuckDB, so the tests hold in any order.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from rag_assets.definitions import build_definitions
from rag_assets.graph import graph_pages
from rag_assets.ingest import ingest_batch
from rag_core.constants import (
    EMBEDDINGS_ASSET,
    GRAPH_CATCH_UP_JOB,
    GRAPH_CATCH_UP_SENSOR,
    INGEST_JOB,
    LANE_TAG,
    RAW_ITEM_FILES_SENSOR,
)
from rag_core.ids import canonical_url, item_key
from rag_core.settings import PROJECT_ROOT, SettingsError
from resources.graph_sink import GraphSinkAuthError, Neo4jGraphSink
from sensors.graph_catch_up import failure_backoff_remaining, graph_catch_up
from tests.graph_server import USER, ArcadeDBServer, expected_counts, expected_links
from tests.helpers import (
    RANGE_END,
    RANGE_START,
    materialize_range,
    materialize_tags,
    paragraphs,
    settings_for,
    write_page,
)

INGEST = [ingest_batch]
SITE = "http://docs.test"
WRITE_TIMES: list[tuple[str, int, float]] = []  # (what, pages, write_s), printed at the end


def url(path: str) -> str:
    return canonical_url(f"{SITE}/{path}")


@pytest.fixture(scope="session")
def graph_server(tmp_path_factory):
    """A running ArcadeDB Bolt server for the whole session, stopped at the end."""
    server = ArcadeDBServer(root=tmp_path_factory.mktemp("arcadedb"))
    server.start()
    yield server
    server.stop()


class Site:
    """The module's data folder, Dagster instance and graph, plus helpers to ingest and query."""

    def __init__(self, settings, instance, server):
        self.settings = settings
        self.instance = instance
        self.server = server
        self.defs = build_definitions(settings)
        self.keys: dict[str, str] = {}

    @property
    def sink(self):
        """The definitions' graph resource, its dg.EnvVar password resolved as a run would."""
        return self.defs.resources["graph"].process_config_and_initialize()

    def page(self, name: str, title: str, body: str, links: list[str]) -> str:
        key = write_page(
            self.settings.raw_dir, url(name), title, body, links=[url(x) for x in links]
        )
        self.keys[name] = key
        return key

    def materialize(self, names: list[str], assets=None, raise_on_error=True):
        keys = [self.keys[n] for n in names]
        result = materialize_range(
            self.instance,
            self.settings,
            keys,
            assets=assets or [*INGEST, graph_pages],
            raise_on_error=raise_on_error,
        )
        return self._timed(result)

    def run(self, assets, tags, raise_on_error=True):
        result = materialize_tags(
            self.instance, self.settings, tags, assets=assets, raise_on_error=raise_on_error
        )
        return self._timed(result)

    def _timed(self, result):
        """Note the graph write's time for the summary printed at the end."""
        events = [
            e for e in result.get_asset_materialization_events() if e.asset_key == graph_pages.key
        ]
        if events:
            meta = events[0].materialization.metadata
            start = result.dagster_run.tags[RANGE_START]
            WRITE_TIMES.append((start, meta["pages"].value, meta["write_s"].value))
        return result

    def cypher(self, query: str, **params) -> list[dict]:
        import neo4j

        with (
            neo4j.GraphDatabase.driver(
                self.server.uri, auth=(USER, self.server.password)
            ) as driver,
            driver.session(database="neo4j") as session,
        ):
            return [dict(r) for r in session.run(query, **params)]

    def duck(self, sql: str) -> list[tuple]:
        with duckdb.connect(str(self.settings.duckdb_path), read_only=True) as con:
            return con.execute(sql).fetchall()

    def expected_counts(self) -> dict[str, int]:
        """The graph's counts as DuckDB says they must be."""
        return expected_counts(self.duck)

    def expected_links(self) -> set[tuple[str, str]]:
        """(source, target) item keys of links between pages that DuckDB has documents for."""
        return expected_links(self.duck)

    def graph_links(self) -> set[tuple[str, str]]:
        rows = self.cypher(
            "MATCH (a:Page)-[:LINKS_TO]->(b:Page) RETURN a.item_id AS s, b.item_id AS t"
        )
        return {(r["s"], r["t"]) for r in rows}


@pytest.fixture(scope="module")
def site(graph_server, tmp_path_factory):
    """Two ingestion batches with graph_pages: the second brings a page the first linked to."""
    data = tmp_path_factory.mktemp("graph_site") / "data"
    settings = settings_for(
        data,
        EMBEDDING_SERVER="false",
        USE_NEO4J="true",
        NEO4J_URI=graph_server.uri,
        NEO4J_USER=USER,
        NEO4J_PASSWORD=graph_server.password,
        NEO4J_DATABASE="neo4j",
    )
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        # The graph resource reads the secret through dg.EnvVar, as in a deployment.
        mp.setenv("NEO4J_PASSWORD", graph_server.password)
        s = Site(settings, instance, graph_server)
        s.cypher("MATCH (n) DETACH DELETE n")
        s.page(
            "install",
            "Install",
            "<h2>Linux</h2>"
            + paragraphs("installing on Linux", 16)
            + "<h2>Windows</h2>"
            + paragraphs("installing on Windows", 4),
            ["faq", "config", "later", "install", "../elsewhere"],
        )
        s.page(
            "faq", "FAQ", "<ul><li>Is it free? Yes.</li><li>Does it scale?</li></ul>", ["install"]
        )
        s.page("config", "Config", paragraphs("configuring retries", 3), ["faq", "install"])
        first = s.materialize(["install", "faq", "config"])
        assert first.success
        # Crawled later: install linked to it in the first batch already.
        s.page("later", "Later", paragraphs("upgrading later", 2), ["install"])
        assert s.materialize(["later"]).success
        yield s


def test_graph_counts_equal_duckdb(site):
    counts = site.sink.counts()
    print(f"\ngraph after two batches: {counts}")
    assert counts == site.expected_counts()
    assert counts["pages"] == 4 and counts["chunks"] > 4 and counts["next"] > 0
    # Every chunk carries the vector DuckDB holds for it.
    chunk_id, vector = site.duck("SELECT chunk_id, embedding FROM embeddings LIMIT 1")[0]
    stored = site.cypher("MATCH (c:Chunk {chunk_id: $id}) RETURN c.embedding AS e", id=chunk_id)[0][
        "e"
    ]
    assert len(stored) == 384 and stored == pytest.approx(list(vector), abs=1e-6)
    missing = site.cypher("MATCH (c:Chunk) WHERE c.embedding IS NULL RETURN count(c) AS n")
    assert missing[0]["n"] == 0
    # Page properties come from the documents table.
    page = site.cypher(
        "MATCH (p:Page {item_id: $id}) RETURN p.url AS url, p.title AS title, p.content_hash AS h",
        id=site.keys["install"],
    )[0]
    assert (page["url"], page["title"]) == (url("install"), "Install")
    assert (
        page["h"]
        == site.duck(
            f"SELECT content_hash FROM documents WHERE item_id = '{site.keys['install']}'"
        )[0][0]
    )


def test_chunks_are_chained_in_reading_order(site):
    key = site.keys["install"]
    expected = [
        r[0]
        for r in site.duck(
            f"SELECT chunk_id FROM chunks WHERE item_id = '{key}' ORDER BY chunk_index"
        )
    ]
    assert len(expected) >= 3
    pairs = site.cypher(
        "MATCH (:Page {item_id: $id})-[:HAS_CHUNK]->(a:Chunk)-[:NEXT]->(b:Chunk) "
        "RETURN a.chunk_id AS a, b.chunk_id AS b",
        id=key,
    )
    following = {r["a"]: r["b"] for r in pairs}
    walk = [expected[0]]
    while walk[-1] in following:
        walk.append(following[walk[-1]])
    assert walk == expected
    assert len(following) == len(expected) - 1
    # NEXT never crosses from one page to another.
    crossing = site.cypher(
        "MATCH (p:Page)-[:HAS_CHUNK]->(:Chunk)-[:NEXT]->(c:Chunk)<-[:HAS_CHUNK]-(q:Page) "
        "WHERE p.item_id <> q.item_id RETURN count(c) AS n"
    )
    assert crossing[0]["n"] == 0


def test_links_between_pages_include_a_page_crawled_later(site):
    k = site.keys
    links = site.graph_links()
    assert links == site.expected_links()
    # Linked from the first batch, crawled in the second: connected when it arrived.
    assert (k["install"], k["later"]) in links
    assert (k["later"], k["install"]) in links
    # Neither a self link nor a link to a page never crawled becomes an edge.
    assert (k["install"], k["install"]) not in links
    assert not any(item_key(url("../elsewhere")) in edge for edge in links)


def test_rerun_changes_nothing(site):
    before = site.sink.counts()
    nodes = site.cypher("MATCH (n) RETURN elementId(n) AS e, n.chunk_id AS c, n.item_id AS i")
    result = site.materialize(["install", "faq", "config", "later"])
    assert result.success
    assert site.sink.counts() == before == site.expected_counts()
    # MERGE found every node: none was deleted and created again.
    again = site.cypher("MATCH (n) RETURN elementId(n) AS e, n.chunk_id AS c, n.item_id AS i")
    key = lambda r: (r["e"], r["c"], r["i"])  # noqa: E731
    assert sorted(map(key, again)) == sorted(map(key, nodes))
    meta = result.asset_materializations_for_node("graph_pages")[0].metadata
    assert meta["stale_chunks_deleted"].value == 0 and meta["pages"].value == 4
    # ArcadeDB has no CREATE VECTOR INDEX: noted, and the graph is complete without it.
    assert meta["vector_index"].value is False
    assert "vector index not created" in meta["schema_note"].value
    constraints = site.cypher("SHOW CONSTRAINTS")
    assert {(tuple(c["labelsOrTypes"]), tuple(c["properties"])) for c in constraints} >= {
        (("Page",), ("item_id",)),
        (("Chunk",), ("chunk_id",)),
    }


def test_changed_page_replaces_its_chunks_and_links(site):
    key = site.keys["faq"]
    old = {
        r["c"]
        for r in site.cypher(
            "MATCH (:Page {item_id: $id})-[:HAS_CHUNK]->(c:Chunk) RETURN c.chunk_id AS c", id=key
        )
    }
    assert old
    site.page("faq", "FAQ", paragraphs("licensing and support plans", 14), ["config"])
    result = site.materialize(["faq"])
    assert result.success
    new = {r[0] for r in site.duck(f"SELECT chunk_id FROM chunks WHERE item_id = '{key}'")}
    stored = {
        r["c"]
        for r in site.cypher(
            "MATCH (:Page {item_id: $id})-[:HAS_CHUNK]->(c:Chunk) RETURN c.chunk_id AS c", id=key
        )
    }
    assert stored == new and len(new) > 1 and not new & old
    gone = site.cypher(
        "MATCH (c:Chunk) WHERE c.chunk_id IN $ids RETURN count(c) AS n", ids=list(old)
    )
    assert gone[0]["n"] == 0
    # Nothing dangles: every chunk has exactly one page, every NEXT stays inside one page.
    orphans = site.cypher(
        "MATCH (c:Chunk) OPTIONAL MATCH (p:Page)-[:HAS_CHUNK]->(c) "
        "WITH c, count(p) AS owners WHERE owners <> 1 RETURN count(c) AS n"
    )
    assert orphans[0]["n"] == 0
    assert site.sink.counts() == site.expected_counts()
    links = site.graph_links()
    assert (key, site.keys["config"]) in links and (key, site.keys["install"]) not in links
    meta = result.asset_materializations_for_node("graph_pages")[0].metadata
    assert meta["stale_chunks_deleted"].value == len(old)


def test_neighbours_give_adjacent_chunks_and_linking_pages(site):
    key = site.keys["install"]
    ordered = site.duck(
        f"SELECT chunk_id, chunk_index, text FROM chunks WHERE item_id = '{key}' "
        "ORDER BY chunk_index"
    )
    first, middle, last = ordered[0][0], ordered[1][0], ordered[-1][0]
    found = site.sink.neighbours([first, middle, last, "no-such-chunk"])
    assert set(found) == {first, middle, last}
    mid = found[middle]
    assert mid.item_id == key and mid.url == url("install")
    assert (mid.previous.chunk_id, mid.previous.chunk_index) == (first, 0)
    assert (mid.next.chunk_id, mid.next.text) == (ordered[2][0], ordered[2][2])
    assert found[first].previous is None and found[last].next is None
    linking = {s for s, t in site.expected_links() if t == key}
    assert {p.item_id for p in mid.linked_from} == linking
    assert site.keys["later"] in linking
    assert site.sink.neighbours([]) == {}


def test_search_graph_returns_neighbours_and_linking_pages(site):
    """`rag search --graph` adds each hit's NEXT neighbours and the pages linking to it."""
    import json
    import os
    import subprocess
    import sys

    settings = site.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER", "NEO4J"))}
    env.update(
        DATA_DIR=str(settings.data_dir), DUCKDB_PATH=str(settings.duckdb_path),
        USE_NEO4J="true", NEO4J_URI=site.server.uri, NEO4J_USER=USER,
        NEO4J_PASSWORD=site.server.password, NEO4J_DATABASE="neo4j", EMBEDDING_SERVER_URL="",
    )  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "rag_app.cli", "search", "installing on Windows", "-k", "3",
         "--graph", "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    hits = json.loads(proc.stdout)
    assert len(hits) == 3 and hits[0]["item_id"] == site.keys["install"]
    graph = hits[0]["graph"]
    assert graph["item_id"] == site.keys["install"]
    assert graph["previous"] or graph["next"]
    linking = {p["item_id"] for p in graph["linked_from"]}
    assert linking == {s for s, t in site.expected_links() if t == site.keys["install"]}
    assert site.server.password not in proc.stdout + proc.stderr


def test_definitions_without_neo4j_have_no_graph(tmp_path, site):
    defs = build_definitions(settings_for(tmp_path, USE_NEO4J="false"))
    keys = defs.resolve_asset_graph().get_all_asset_keys()
    assert graph_pages.key not in keys and dg.AssetKey(EMBEDDINGS_ASSET) in keys
    assert "graph" not in defs.resources
    assert [s.name for s in defs.sensors] == [RAW_ITEM_FILES_SENSOR]
    ingest = defs.resolve_job_def(INGEST_JOB)
    assert "graph_pages" not in ingest.graph.node_dict
    # With the graph on, the job the sensor launches ends with graph_pages.
    on = site.defs
    assert "graph_pages" in on.resolve_job_def(INGEST_JOB).graph.node_dict
    sensor = next(s for s in on.sensors if s.name == RAW_ITEM_FILES_SENSOR)
    assert INGEST_JOB in [t.job_name for t in sensor.targets]
    assert {s.name for s in on.sensors} == {RAW_ITEM_FILES_SENSOR, GRAPH_CATCH_UP_SENSOR}
    # With USE_NEO4J=false, loading the code location does not import the driver.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, rag_assets.definitions as d; "
            "assert not d.defs.resources.get('graph'); print('neo4j' in sys.modules)",
        ],
        env={"USE_NEO4J": "false", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=str(PROJECT_ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "False"


def test_wrong_password_names_the_uri_not_the_password(site):
    secret = "not-the-password-" + uuid.uuid4().hex[:8]
    bad = Neo4jGraphSink(uri=site.server.uri, user=USER, password=secret, database="neo4j")
    with pytest.raises(GraphSinkAuthError) as info:
        bad.check()
    assert site.server.uri in str(info.value) and secret not in str(info.value)
    # In a run the step fails at once: wrong credentials do not heal, so no retries.
    key = site.keys["faq"]
    result = dg.materialize(
        [graph_pages],
        instance=site.instance,
        resources={**site.defs.resources, "graph": bad},
        tags={RANGE_START: key, RANGE_END: key},
        raise_on_error=False,
    )
    assert not result.success
    kinds = [e.event_type for e in result.all_events]
    assert dg.DagsterEventType.STEP_UP_FOR_RETRY not in kinds
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert site.server.uri in failure.step_failure_data.user_failure_data.description
    assert secret not in "".join(e.message or "" for e in site.instance.all_logs(result.run_id))


def test_outage_fails_only_the_graph_step_and_catch_up_repairs_it(site):
    server, instance = site.server, site.instance
    sensor_resources = {"graph": site.sink}

    def tick():
        context = dg.build_sensor_context(instance=instance, resources=sensor_resources)
        return graph_catch_up(context)

    assert "up to date" in tick().skip_message
    site.page("outage", "Outage", paragraphs("writing during an outage", 5), ["install", "later"])
    server.stop()
    try:
        result = site.materialize(["outage"], raise_on_error=False)
        assert not result.success
        failures = [
            e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE
        ]
        assert [e.step_key for e in failures] == ["graph_pages"]
        error = failures[0].step_failure_data.error
        text = error.to_string() + "".join(
            e.message or "" for e in instance.all_logs(result.run_id)
        )
        # The step failed after its retries; the reason is the sink's error naming the URI.
        assert "max_retries" in error.message
        reason = error.cause
        assert reason.cls_name == "GraphSinkUnavailableError"
        assert f"graph server at {server.uri} is unavailable" in reason.message
        assert server.password not in text
        # DuckDB is complete for the item: every stage before the graph succeeded.
        key = site.keys["outage"]
        stored = site.duck(
            f"SELECT (SELECT count(*) FROM documents WHERE item_id = '{key}'), "
            f"(SELECT count(*) FROM chunks WHERE item_id = '{key}'), "
            f"(SELECT count(*) FROM embeddings WHERE item_id = '{key}')"
        )[0]
        assert stored[0] == 1 and stored[1] == stored[2] > 0
        # While the server is down the sensor waits instead of launching a run that must fail.
        waiting = tick()
        assert "wait for the graph server" in waiting.skip_message
        assert server.uri in waiting.skip_message
    finally:
        server.start()
    # An ingestion run in flight (it would write the graph itself) holds the catch-up back.
    running = DagsterRun(
        job_name=INGEST_JOB,
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.STARTED,
        tags={LANE_TAG: "ingest"},
    )
    instance.run_storage.add_run(running)
    assert "in flight" in tick().skip_message
    instance.report_run_failed(running)
    go = tick()
    assert len(go.run_requests) == 1
    request = go.run_requests[0]
    assert request.job_name == GRAPH_CATCH_UP_JOB
    assert request.tags[RANGE_START] == request.tags[RANGE_END] == key
    catch_up = site.run([graph_pages], request.tags)
    assert catch_up.success
    assert site.sink.counts() == site.expected_counts()
    links = site.graph_links()
    assert (key, site.keys["install"]) in links and (key, site.keys["later"]) in links
    assert "up to date" in tick().skip_message
    # A catch-up run that failed although the server answered is not retried at once.
    failed = DagsterRun(job_name=GRAPH_CATCH_UP_JOB, run_id=str(uuid.uuid4()))
    instance.run_storage.add_run(failed)
    instance.report_run_failed(failed)
    assert failure_backoff_remaining(instance, now=time.time()) > 30
    print(f"\ngraph after the catch-up: {site.sink.counts()}")
    print("graph writes (range start, pages, write_s):", *WRITE_TIMES, sep="\n  ")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"NEO4J_URI": "http://graph.test:7474"},
            "NEO4J_URI='http://graph.test:7474' is not valid",
        ),
        ({"NEO4J_URI": "bolt://:7687"}, "a URI with scheme bolt"),
        ({"NEO4J_USER": " "}, "NEO4J_USER=' ' is not valid"),
        ({"NEO4J_DATABASE": ""}, "NEO4J_DATABASE='' is not valid"),
        ({"USE_NEO4J": "true"}, "NEO4J_PASSWORD='' is not valid"),
    ],
)
@pytest.mark.unit
def test_graph_settings_are_validated(tmp_path, env, message):
    with pytest.raises(SettingsError, match=re.escape(message)):
        settings_for(tmp_path, **env)


@pytest.mark.unit
def test_graph_settings_never_hold_or_echo_the_password(tmp_path):
    with pytest.raises(SettingsError) as info:
        settings_for(tmp_path, NEO4J_URI="bolt://neo4j:hunter22@graph.test:7687")
    assert "hunter22" not in str(info.value) and "NEO4J_PASSWORD" in str(info.value)
    settings = settings_for(
        tmp_path, USE_NEO4J="true", NEO4J_PASSWORD="hunter22", NEO4J_URI="neo4j+s://g.test"
    )
    assert settings.neo4j_uri == "neo4j+s://g.test" and settings.neo4j_user == "neo4j"
    assert "hunter22" not in repr(settings)
    graph = build_definitions(settings).resources["graph"]
    # A reference to the variable, resolved only when a run or a sensor tick uses the resource.
    assert isinstance(graph.password, dg.EnvVar) and graph.password == "NEO4J_PASSWORD"


def test_two_graph_writes_at_once_keep_the_links_between_their_pages(graph_server):
    """Two ingestion runs in flight (INGEST_MAX_CONCURRENT_RUNS > 1) write the graph at once:
    each write must still link its pages to the other's, though neither saw the other's
    pages uncommitted. The two writes are forced to interleave: each stops after writing its
    pages until the other has written its own."""
    import contextlib
    import threading

    import neo4j

    from resources.graph_sink import UPSERT_PAGES, GraphPage

    barrier = threading.Barrier(2, timeout=20)

    class Interleaved(Neo4jGraphSink):
        def _write_group(self, tx, pages):
            run = tx.run

            def paused(query, **params):
                result = run(query, **params)
                if query == UPSERT_PAGES:
                    result.consume()
                    with contextlib.suppress(threading.BrokenBarrierError):
                        barrier.wait()  # broken only if the other write never got here
                return result

            tx.run = paused
            return super()._write_group(tx, pages)

    sink = Interleaved(uri=graph_server.uri, user=USER, password=graph_server.password)
    sink.ensure_schema()
    pages = [GraphPage("race-a", f"{SITE}/race-a", "A", "ha", ["race-b"]),
             GraphPage("race-b", f"{SITE}/race-b", "B", "hb", ["race-a"])]  # fmt: skip
    errors: list[BaseException] = []

    def write(page):
        try:
            sink.write_pages([page])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in pages]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        with (
            neo4j.GraphDatabase.driver(
                graph_server.uri, auth=(USER, graph_server.password)
            ) as driver,
            driver.session(database="neo4j") as session,
        ):
            links = session.run(
                "MATCH (a:Page)-[:LINKS_TO]->(b:Page) WHERE a.item_id STARTS WITH 'race-' "
                "RETURN a.item_id AS s, b.item_id AS t"
            )
            assert {(r["s"], r["t"]) for r in links} == {
                ("race-a", "race-b"),
                ("race-b", "race-a"),
            }
    finally:
        sink.write_pages([], removed=["race-a", "race-b"])
