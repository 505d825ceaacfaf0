"""Spiders of the ragbot project."""
