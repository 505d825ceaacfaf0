"""Dagster-free core of the RAG platform: ids, item files, extraction, chunking, settings."""
