"""Neo4j graph sink: pages, their chunks in reading order and the links between pages, over Bolt.

Graph model::

    (:Page {item_id, url, title, content_hash, link_ids})-[:HAS_CHUNK]->
        (:Chunk {chunk_id, chunk_index, text, embedding})
    (:Chunk)-[:NEXT]->(:Chunk)        consecutive chunks of one page, in reading order
    (:Page)-[:LINKS_TO]->(:Page)      links between crawled pages

``link_ids`` keeps the item keys a page links to, crawled or not, so that a page
crawled later is connected to the pages that link to it when it arrives.

Every write is a batched ``UNWIND $rows AS row MERGE ...`` inside one managed write
transaction per group of pages (and a second one for its links, begun after the first
committed, so that two writes at once still link each other's pages), so a rerun changes
nothing and a retried transaction cannot leave half a group. The Cypher is what Neo4j 5
accepts; it is tested against ArcadeDB's Bolt plugin, which lacks only ``CREATE VECTOR
INDEX`` (see ensure_schema).

The ``neo4j`` driver is imported inside the methods: with USE_NEO4J=false this
resource is not even built, and building it never opens a connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg

from rag_core.redact import MASK, mask_secrets

if TYPE_CHECKING:
    import neo4j

    from rag_core.settings import Settings


class GraphSinkError(RuntimeError):
    """The graph server could not be used; the message names its URI (never the password)."""


class GraphSinkUnavailableError(GraphSinkError):
    """The graph server did not answer (down, unreachable, restarting): worth a retry later."""


class GraphSinkAuthError(GraphSinkError):
    """The graph server refused the credentials: retrying will not help."""


@dataclass(frozen=True)
class GraphChunk:
    """One chunk of a page as the graph stores it."""

    chunk_id: str
    chunk_index: int
    text: str
    embedding: list[float] | None = None


@dataclass(frozen=True)
class GraphPage:
    """One page with its chunks (in reading order) and the item keys it links to."""

    item_id: str
    url: str
    title: str
    content_hash: str
    link_ids: list[str] = field(default_factory=list)
    chunks: list[GraphChunk] = field(default_factory=list)


@dataclass
class WriteSummary:
    """What one write_pages call left in the graph for its pages."""

    pages: int = 0
    chunks: int = 0
    next_edges: int = 0
    # LINKS_TO edges from the written pages, plus edges into them from pages already there.
    links: int = 0
    stale_chunks_deleted: int = 0
    pages_deleted: int = 0

    def add(self, other: WriteSummary) -> None:
        """Accumulate another group's figures into this one."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class SchemaReport:
    """Which parts of the schema the server accepted."""

    constraints: int
    vector_index: bool
    # The vector width the index was asked for (None: no embeddings seen, not attempted).
    dimension: int | None = None
    note: str = ""


@dataclass(frozen=True)
class NeighbourChunk:
    """A chunk next to another one along NEXT."""

    chunk_id: str
    chunk_index: int
    text: str


@dataclass(frozen=True)
class LinkingPage:
    """A page that links to the page of a chunk."""

    item_id: str
    url: str
    title: str


@dataclass(frozen=True)
class ChunkNeighbours:
    """A chunk's page, its previous and next chunk, and (some of) the pages linking to its page."""

    chunk_id: str
    item_id: str
    url: str
    title: str
    previous: NeighbourChunk | None
    next: NeighbourChunk | None
    linked_from: list[LinkingPage]


CONSTRAINTS = (
    "CREATE CONSTRAINT page_item_id IF NOT EXISTS FOR (p:Page) REQUIRE p.item_id IS UNIQUE",
    "CREATE CONSTRAINT chunk_chunk_id IF NOT EXISTS FOR (c:Chunk) REQUIRE c.chunk_id IS UNIQUE",
)
# Neo4j 5.11+ syntax. ArcadeDB (the test server) answers "Only standard, RANGE and TEXT index
# types are supported", so the index is optional: without it the graph is still complete.
VECTOR_INDEX = (
    "CREATE VECTOR INDEX chunk_embedding IF NOT EXISTS FOR (c:Chunk) ON c.embedding "
    "OPTIONS {{indexConfig: {{`vector.dimensions`: {dim}, "
    "`vector.similarity_function`: 'cosine'}}}}"
)

UPSERT_PAGES = """
UNWIND $rows AS row
MERGE (p:Page {item_id: row.item_id})
SET p.url = row.url, p.title = row.title, p.content_hash = row.content_hash,
    p.link_ids = row.link_ids
"""
# A changed page gets new chunk ids (they hash the text): its old chunks go, and DETACH
# takes their HAS_CHUNK and NEXT edges with them, so no edge is left dangling.
DELETE_STALE_CHUNKS = """
UNWIND $rows AS row
MATCH (p:Page {item_id: row.item_id})-[:HAS_CHUNK]->(c:Chunk)
WHERE NOT c.chunk_id IN row.chunk_ids
DETACH DELETE c
RETURN count(*) AS n
"""
UPSERT_CHUNKS = """
UNWIND $rows AS row
MATCH (p:Page {item_id: row.item_id})
MERGE (c:Chunk {chunk_id: row.chunk_id})
SET c.chunk_index = row.chunk_index, c.text = row.text, c.embedding = row.embedding
MERGE (p)-[:HAS_CHUNK]->(c)
"""
# Kept chunk ids keep their index (the id hashes it), so edges between kept chunks stay right.
MERGE_NEXT = """
UNWIND $rows AS row
MATCH (a:Chunk {chunk_id: row.source}), (b:Chunk {chunk_id: row.target})
MERGE (a)-[:NEXT]->(b)
"""
DELETE_STALE_LINKS = """
UNWIND $rows AS row
MATCH (p:Page {item_id: row.item_id})-[r:LINKS_TO]->(q:Page)
WHERE NOT q.item_id IN row.link_ids
DELETE r
"""
MERGE_OUTGOING_LINKS = """
UNWIND $rows AS row
MATCH (p:Page {item_id: row.item_id})
UNWIND row.link_ids AS target
MATCH (q:Page {item_id: target})
MERGE (p)-[:LINKS_TO]->(q)
RETURN count(*) AS n
"""
# Pages written earlier that link to the new ones: one scan of the pages' link lists per group
# (Neo4j cannot index list elements). Pages of this group are covered by the outgoing query.
MERGE_INCOMING_LINKS = """
MATCH (q:Page)
WHERE NOT q.item_id IN $ids AND any(t IN q.link_ids WHERE t IN $ids)
UNWIND [t IN q.link_ids WHERE t IN $ids] AS target
MATCH (p:Page {item_id: target})
MERGE (q)-[:LINKS_TO]->(p)
RETURN count(*) AS n
"""
COUNT_PAGES = """
UNWIND $ids AS id
MATCH (p:Page {item_id: id})
RETURN count(p) AS n
"""
DELETE_PAGES = """
UNWIND $ids AS id
MATCH (p:Page {item_id: id})
OPTIONAL MATCH (p)-[:HAS_CHUNK]->(c:Chunk)
DETACH DELETE c, p
"""
NEIGHBOURS = """
UNWIND $ids AS id
MATCH (p:Page)-[:HAS_CHUNK]->(c:Chunk {chunk_id: id})
OPTIONAL MATCH (prev:Chunk)-[:NEXT]->(c)
OPTIONAL MATCH (c)-[:NEXT]->(nxt:Chunk)
OPTIONAL MATCH (src:Page)-[:LINKS_TO]->(p)
WITH id, p, prev, nxt, collect(DISTINCT src.item_id) AS sources
RETURN id, p.item_id AS item_id, p.url AS url, p.title AS title,
       prev.chunk_id AS prev_id, prev.chunk_index AS prev_index, prev.text AS prev_text,
       nxt.chunk_id AS next_id, nxt.chunk_index AS next_index, nxt.text AS next_text,
       sources[0..$limit] AS sources
"""
PAGES_BY_ID = """
UNWIND $ids AS id
MATCH (p:Page {item_id: id})
RETURN p.item_id AS item_id, p.url AS url, p.title AS title
"""


def _chunked(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _single_count(tx: neo4j.ManagedTransaction, query: str, **params: Any) -> int:
    record = tx.run(query, **params).single()
    return int(record["n"]) if record else 0


class Neo4jGraphSink(dg.ConfigurableResource):
    """A Neo4j 5 (or Bolt-compatible) server that receives pages, chunks and links."""

    uri: str = "bolt://127.0.0.1:7687"
    user: str = "neo4j"
    password: str = ""
    database: str = "neo4j"
    # Pages per write transaction, and rows per UNWIND statement (chunks carry their vectors).
    pages_per_transaction: int = 200
    rows_per_statement: int = 500
    connection_timeout_seconds: float = 10.0
    # How long the driver itself retries a transaction on transient errors; outages longer
    # than this fail the step, which Dagster retries and the graph_catch_up sensor completes.
    transaction_retry_seconds: float = 15.0
    # Pages returned per chunk by neighbours(): hub pages are linked from nearly everywhere.
    max_linking_pages: int = 10

    def _safe(self, message: str) -> str:
        """``message`` without credentials: URI user info masked, the password never shown."""
        message = mask_secrets(message)
        return message.replace(self.password, MASK) if len(self.password) >= 4 else message

    @contextlib.contextmanager
    def _driver(self) -> Iterator[neo4j.Driver]:
        """A connected driver; connection and auth errors become GraphSinkErrors naming the URI."""
        import neo4j
        from neo4j import exceptions as nex

        try:
            driver = neo4j.GraphDatabase.driver(
                self.uri,
                auth=(self.user, self.password),
                connection_timeout=self.connection_timeout_seconds,
                max_transaction_retry_time=self.transaction_retry_seconds,
            )
        except (ValueError, nex.ConfigurationError) as exc:
            raise GraphSinkError(
                self._safe(f"graph server URI {self.uri!r} is not usable: {exc}")
            ) from exc
        try:
            # Fails fast (unlike managed transactions, which retry for transaction_retry_seconds).
            driver.verify_connectivity()
            yield driver
        except nex.AuthError as exc:
            raise GraphSinkAuthError(
                self._safe(
                    f"graph server at {self.uri} refused user {self.user!r}: check NEO4J_USER "
                    f"and NEO4J_PASSWORD ({exc.message or type(exc).__name__})"
                )
            ) from exc
        except (nex.ServiceUnavailable, nex.SessionExpired, OSError) as exc:
            raise GraphSinkUnavailableError(
                self._safe(f"graph server at {self.uri} is unavailable: {exc}")
            ) from exc
        except nex.Neo4jError as exc:
            raise GraphSinkError(
                self._safe(f"graph server at {self.uri} (database {self.database!r}) failed: {exc}")
            ) from exc
        finally:
            driver.close()

    def check(self) -> None:
        """Raise a GraphSinkError naming the URI unless the server answers a query."""
        with self._driver() as driver, driver.session(database=self.database) as session:
            session.run("RETURN 1").consume()

    def ensure_schema(self, dimension: int | None = None) -> SchemaReport:
        """Unique Page.item_id and Chunk.chunk_id; a vector index where the server supports it."""
        from neo4j import exceptions as nex

        with self._driver() as driver, driver.session(database=self.database) as session:
            for statement in CONSTRAINTS:
                session.run(statement).consume()
            if not dimension:
                return SchemaReport(len(CONSTRAINTS), False)
            try:
                session.run(VECTOR_INDEX.format(dim=int(dimension))).consume()
            except (nex.AuthError, nex.Forbidden):
                raise
            except (nex.ClientError, nex.DatabaseError) as exc:
                # Older Neo4j and ArcadeDB lack CREATE VECTOR INDEX: the graph works without it.
                note = (
                    f"vector index not created on {self.uri} ({exc.message or exc}); "
                    "chunks keep their embeddings"
                )
                return SchemaReport(len(CONSTRAINTS), False, int(dimension), note)
        return SchemaReport(len(CONSTRAINTS), True, int(dimension))

    def write_pages(self, pages: Sequence[GraphPage], removed: Sequence[str] = ()) -> WriteSummary:
        """Write ``pages`` (with chunks, NEXT and LINKS_TO edges) and delete ``removed`` pages."""
        summary = WriteSummary()
        if not pages and not removed:
            return summary
        with self._driver() as driver, driver.session(database=self.database) as session:
            for group in _chunked(list(pages), self.pages_per_transaction):
                summary.add(session.execute_write(self._write_group, group))
                # The links in a second transaction, begun after the pages' commit: it sees
                # every page committed before, so of two writes at once (several ingestion
                # runs in flight) the later one links the pages of both. Inside the first
                # transaction neither write would see the other's uncommitted pages.
                summary.links += session.execute_write(self._link_group, group)
            if removed:
                summary.pages_deleted += session.execute_write(self._delete_pages, list(removed))
        return summary

    def _write_group(
        self, tx: neo4j.ManagedTransaction, pages: Sequence[GraphPage]
    ) -> WriteSummary:
        # Runs inside one transaction, possibly more than once (the driver retries it): every
        # statement is an idempotent MERGE or a delete of what the rows no longer contain.
        page_rows = [
            {
                "item_id": p.item_id,
                "url": p.url,
                "title": p.title,
                "content_hash": p.content_hash,
                "link_ids": list(p.link_ids),
                "chunk_ids": [c.chunk_id for c in p.chunks],
            }
            for p in pages
        ]
        chunk_rows = [
            {
                "item_id": p.item_id,
                "chunk_id": c.chunk_id,
                "chunk_index": c.chunk_index,
                "text": c.text,
                "embedding": c.embedding,
            }
            for p in pages
            for c in p.chunks
        ]
        next_rows = []
        for p in pages:
            ordered = sorted(p.chunks, key=lambda c: c.chunk_index)
            next_rows += [
                {"source": a.chunk_id, "target": b.chunk_id}
                for a, b in zip(ordered, ordered[1:], strict=False)
            ]
        summary = WriteSummary(pages=len(pages), chunks=len(chunk_rows), next_edges=len(next_rows))
        tx.run(UPSERT_PAGES, rows=page_rows).consume()
        summary.stale_chunks_deleted = _single_count(tx, DELETE_STALE_CHUNKS, rows=page_rows)
        for rows in _chunked(chunk_rows, self.rows_per_statement):
            tx.run(UPSERT_CHUNKS, rows=list(rows)).consume()
        for rows in _chunked(next_rows, self.rows_per_statement * 4):
            tx.run(MERGE_NEXT, rows=list(rows)).consume()
        tx.run(DELETE_STALE_LINKS, rows=page_rows).consume()
        return summary

    @staticmethod
    def _link_group(tx: neo4j.ManagedTransaction, pages: Sequence[GraphPage]) -> int:
        """LINKS_TO edges from ``pages`` to the pages in the graph, and into them."""
        rows = [{"item_id": p.item_id, "link_ids": list(p.link_ids)} for p in pages]
        links = _single_count(tx, MERGE_OUTGOING_LINKS, rows=rows)
        return links + _single_count(tx, MERGE_INCOMING_LINKS, ids=[p.item_id for p in pages])

    @staticmethod
    def _delete_pages(tx: neo4j.ManagedTransaction, ids: list[str]) -> int:
        found = _single_count(tx, COUNT_PAGES, ids=ids)
        if found:
            tx.run(DELETE_PAGES, ids=ids).consume()
        return found

    def neighbours(self, chunk_ids: Sequence[str]) -> dict[str, ChunkNeighbours]:
        """Per chunk found: its page, previous and next chunk, and pages linking to its page."""
        if not chunk_ids:
            return {}
        with self._driver() as driver, driver.session(database=self.database) as session:
            records = list(
                session.run(NEIGHBOURS, ids=list(chunk_ids), limit=self.max_linking_pages)
            )
            source_ids = sorted({s for r in records for s in r["sources"] if s is not None})
            sources = {
                r["item_id"]: LinkingPage(r["item_id"], r["url"] or "", r["title"] or "")
                for r in session.run(PAGES_BY_ID, ids=source_ids)
            }
        result = {}
        for r in records:
            result[r["id"]] = ChunkNeighbours(
                chunk_id=r["id"],
                item_id=r["item_id"],
                url=r["url"] or "",
                title=r["title"] or "",
                previous=(
                    NeighbourChunk(r["prev_id"], r["prev_index"], r["prev_text"])
                    if r["prev_id"]
                    else None
                ),
                next=(
                    NeighbourChunk(r["next_id"], r["next_index"], r["next_text"])
                    if r["next_id"]
                    else None
                ),
                linked_from=sorted(
                    (sources[s] for s in r["sources"] if s in sources), key=lambda p: p.url
                ),
            )
        return result

    def counts(self) -> dict[str, int]:
        """Pages, chunks and each relationship type in the graph (for status and tests)."""
        queries = {
            "pages": "MATCH (p:Page) RETURN count(p) AS n",
            "chunks": "MATCH (c:Chunk) RETURN count(c) AS n",
            "has_chunk": "MATCH (:Page)-[r:HAS_CHUNK]->(:Chunk) RETURN count(r) AS n",
            "next": "MATCH (:Chunk)-[r:NEXT]->(:Chunk) RETURN count(r) AS n",
            "links_to": "MATCH (:Page)-[r:LINKS_TO]->(:Page) RETURN count(r) AS n",
        }
        with self._driver() as driver, driver.session(database=self.database) as session:
            return {name: int(session.run(q).single()["n"]) for name, q in queries.items()}


def graph_sink_from_settings(settings: Settings) -> Neo4jGraphSink:
    """The graph sink; the password is read from NEO4J_PASSWORD when a run or tick needs it."""
    return Neo4jGraphSink(
        uri=settings.neo4j_uri,
        user=settings.neo4j_user,
        password=dg.EnvVar("NEO4J_PASSWORD"),
        database=settings.neo4j_database,
    )
