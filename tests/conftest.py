"""Shared fixtures and the test tiers.

Tiers (markers registered in pyproject.toml; ``make test-unit`` runs the first):
- ``unit``: pure functions in-process: no Dagster instance, no server, no subprocess;
- ``dagster``: assets and sensors in-process on an ephemeral (or temporary) Dagster instance;
- ``e2e``: a real daemon, real servers or subprocesses (crawls, ``rag`` commands).

Each test module's tier is in ``MODULE_TIERS`` below; a test that differs from its module
carries its own marker (``@pytest.mark.e2e``). Collection fails for a test with no tier or
two, so a new module cannot be forgotten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rag_core.settings import Settings
from tests.helpers import (
    HttpServer,
    LocalSite,
    settings_for,
    start_http_server,
    start_static_site,
)

TIERS = ("unit", "dagster", "e2e")

# Module -> the tier of its tests (tests marked otherwise keep their own marker).
MODULE_TIERS = {
    "test_architecture": "unit",
    "test_atomic_swap": "e2e",
    "test_bad_input": "e2e",
    "test_batches": "dagster",
    "test_bench_smoke": "e2e",
    "test_chunking": "unit",
    "test_crawl_resume": "e2e",
    "test_crawl_safety": "e2e",
    "test_crawler": "unit",
    "test_demo_site": "unit",
    "test_ducklake_store": "e2e",
    "test_e2e_daemon": "e2e",
    "test_embedding": "unit",
    "test_embedders": "dagster",
    "test_embedding_server": "e2e",
    "test_eval": "unit",
    "test_extraction": "unit",
    "test_fingerprint": "dagster",
    "test_graph_sink": "e2e",
    "test_ids_items": "unit",
    "test_ingest_assets": "dagster",
    "test_instance_storage": "e2e",
    "test_metrics": "unit",
    "test_ops_e2e": "e2e",
    "test_priority": "unit",
    "test_prune": "unit",
    "test_prune_e2e": "e2e",
    "test_query_embedding": "e2e",
    "test_reconcile": "dagster",
    "test_recrawl_e2e": "e2e",
    "test_redact": "unit",
    "test_rekey": "dagster",
    "test_runner": "unit",
    "test_search_modes": "unit",
    "test_sensor": "dagster",
    "test_sensor_integrity": "dagster",
    "test_serve": "e2e",
    "test_scale_out": "e2e",
    "test_session": "e2e",
    "test_settings": "unit",
    "test_settings_chain": "unit",
    "test_soak": "e2e",
    "test_store": "unit",
    "test_store_interface": "unit",
    "test_vector_cache": "unit",
    "test_tiers": "unit",
    "test_webserver_graphql": "e2e",
}


def tiers_of(item: pytest.Item) -> set[str]:
    """The tier markers an item carries (from itself, its class or its module)."""
    return {m.name for m in item.iter_markers() if m.name in TIERS}


def assign_tier(item: pytest.Item) -> str:
    """Give ``item`` its module's tier unless it has its own; return the tier, or raise a
    UsageError naming the problem (no tier, or more than one)."""
    own = tiers_of(item)
    module = Path(str(item.fspath)).stem
    if not own:
        if module not in MODULE_TIERS:
            raise pytest.UsageError(
                f"{item.nodeid}: no test tier; add {module!r} to MODULE_TIERS in "
                "tests/conftest.py (or mark the test unit, dagster or e2e)"
            )
        item.add_marker(MODULE_TIERS[module])
        own = {MODULE_TIERS[module]}
    if len(own) != 1:
        raise pytest.UsageError(f"{item.nodeid}: more than one test tier: {sorted(own)}")
    return own.pop()


def pytest_configure(config: pytest.Config) -> None:  # noqa: ARG001 - pytest hook signature
    """A suite started as a background job (`make test &` in a script) inherits SIGINT ignored,
    and Dagster's in-process execution then sets SIGTERM to SIGINT's action too
    (dagster._utils.interrupts): every process a test started afterwards ignored SIGTERM, and
    `rag serve`'s fixture timed out stopping it (test_serve.py, CI run of 2026-12-02). With a
    Python handler here, exec gives children the default action, as in a terminal."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


# tryfirst: the markers must be on the items before `-m unit` deselects by them.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        assign_tier(item)


# -- data folders and Dagster ---------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for a data folder under ``tmp_path`` (DATA_DIR, DUCKDB_PATH and the instance
    inside it), embedding in-process (no warm server)."""
    return settings_for(tmp_path / "data", EMBEDDING_SERVER="false")


@pytest.fixture
def instance():
    """An ephemeral Dagster instance (temporary folder, SQLite storage), removed afterwards."""
    import dagster as dg

    with dg.instance_for_test() as inst:
        yield inst


# -- ports and local sites ------------------------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[Callable[..., HttpServer]]:
    """Start routed HTTP servers on free ports: ``http_server(static_root=None)``; all are
    stopped after the test."""
    started: list[HttpServer] = []

    def start(static_root: Path | None = None) -> HttpServer:
        started.append(start_http_server(static_root))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def local_site() -> Iterator[Callable[..., LocalSite]]:
    """Serve folders on free ports: ``local_site(root, delay_s=0.15)``, with latency and a
    switchable mode (``site.mode["value"] = "down"``); all are stopped after the test."""
    started: list[LocalSite] = []

    def start(root: Path, delay_s: float = 0.15) -> LocalSite:
        started.append(start_static_site(root, delay_s))
        return started[-1]

    yield start
    for site in started:
        site.stop()


# -- a fast embedder ------------------------------------------------------------------------------


@pytest.fixture
def fake_embedder():
    """A deterministic embedder for fast tests: the same text always gives the same unit
    vector, and no model is loaded."""
    from rag_core.embedders.fake import FakeEmbedder

    return FakeEmbedder()
