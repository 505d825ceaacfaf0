"""The item partitions: one dynamic partition per crawled page, keyed by its URL hash."""

import dagster as dg

ITEMS_PARTITIONS_NAME = "items"

items_partitions = dg.DynamicPartitionsDefinition(name=ITEMS_PARTITIONS_NAME)
