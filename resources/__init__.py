"""Dagster resources: every external system the assets touch, typed and configurable."""
