"""Dagster assets of the RAG platform: the crawl and the item-partitioned ingestion chain."""
