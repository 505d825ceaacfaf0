"""Scrapy project that crawls sites and streams one item file per page into RAW_ITEMS_DIR."""
