"""Dagster sensors of the RAG platform."""
