"""Removal of pages that are gone from the site (PRUNE_REMOVED=true)."""

import time

import dagster as dg

from rag_assets.crawl import crawled_pages
from rag_assets.partitions import ITEMS_PARTITIONS_NAME
from rag_core import prune, store

DESCRIPTION = (
    "Pages the last crawl showed to be gone (404/410, or not reached by a complete crawl), "
    "removed from every table{graph}, from data/raw and from the `items` partitions. "
    "Requested by the raw_item_files sensor when no ingestion run is in flight."
)


def build_removed_pages(with_graph: bool = False) -> dg.AssetsDefinition:
    """The pruning asset; with the graph sink it removes the pages from the graph too."""

    @dg.asset(
        name="removed_pages",
        group_name="crawl",
        kinds={"duckdb", "neo4j"} if with_graph else {"duckdb"},
        deps=[crawled_pages],
        required_resource_keys={"raw_store", "duckdb"} | ({"graph"} if with_graph else set()),
        description=DESCRIPTION.format(graph=" and from the graph" if with_graph else ""),
    )
    def removed_pages(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Pages removed from the stores because the site no longer has them."""
        started = time.monotonic()
        raw_store, duckdb = context.resources.raw_store, context.resources.duckdb
        plan = prune.read_removals(raw_store.folder)
        keys = sorted(plan)
        urls = (
            dict(
                duckdb.query(
                    "SELECT item_id, url FROM raw_items WHERE item_id IN (SELECT unnest(?))", [keys]
                )
            )
            if keys
            else {}
        )
        with duckdb.write() as con:  # one transaction: a page is gone from every table or none
            for table in (*store.ITEM_TABLES, "ingest_errors"):
                store.delete_items(con, table, keys)
        if with_graph and keys:
            context.resources.graph.write_pages([], removed=keys)
        for key in keys:
            raw_store.path_for(key).unlink(missing_ok=True)
            context.instance.delete_dynamic_partition(ITEMS_PARTITIONS_NAME, key)
        prune.clear_removals(raw_store.folder, set(keys))
        context.log.info(f"removed {len(keys)} page(s) gone from the site")
        lines = [f"| `{k}` | {urls.get(k, '')} | {plan[k]} |" for k in keys[:50]]
        table = "| item | url | reason |\n| --- | --- | --- |\n" + "\n".join(lines)
        return dg.MaterializeResult(
            metadata={
                "removed": dg.MetadataValue.int(len(keys)),
                "pages": dg.MetadataValue.md(table if lines else "nothing to remove"),
                "elapsed_s": dg.MetadataValue.float(round(time.monotonic() - started, 3)),
            }
        )

    return removed_pages
