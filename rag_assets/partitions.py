"""The item partitions: one dynamic partition per crawled page, keyed by its URL hash."""

import dagster as dg

from rag_core.constants import ITEMS_PARTITIONS

items_partitions = dg.DynamicPartitionsDefinition(name=ITEMS_PARTITIONS)
