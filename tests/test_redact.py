"""No secret in any message (issue 10, point 5) and safe defaults (point 6).

The end-to-end grep after a real run with credentials is in tests/test_session.py
(``test_sigkill_orphans_are_reaped_and_a_run_with_credentials_completes_leaking_nothing``).
"""

from __future__ import annotations

import logging

import pytest

from rag_core.redact import MaskingFilter, mask_secrets, mask_value, unmask_urls
from rag_core.settings import SettingsError
from tests.helpers import settings_for

PASSWORD = "hunter2-Secret"


@pytest.mark.parametrize(
    "text",
    [
        f"https://alice:{PASSWORD}@docs.example.com/a?b=c",
        f"see bolt://neo4j:{PASSWORD}@127.0.0.1:notaport for details",
        f"neo4j+s://user%40corp:{PASSWORD}@graph:7687",
        f"Crawled (200) <GET http://crawler:{PASSWORD}@127.0.0.1:8000/> (referer: None)",
        f"Authorization: Bearer {PASSWORD}",
        f"password={PASSWORD}",
    ],
)
def test_credentials_are_masked_and_the_rest_kept(text):
    masked = mask_secrets(text)
    assert PASSWORD not in masked
    assert "***" in masked
    if "://" in text:
        assert "@" in masked and masked.split("@", 1)[1] == text.split("@", 1)[1]


def test_text_without_credentials_is_unchanged():
    for text in ("http://example.com/a@b", "mail me: a@b.c", "tokens: 224", "no url here"):
        assert mask_secrets(text) == text


def test_nested_values_and_log_records_are_masked():
    value = {"start_urls": [f"http://u:{PASSWORD}@h/"], "n": 3}
    assert PASSWORD not in repr(mask_value(value)) and mask_value(value)["n"] == 3
    record = logging.LogRecord(
        "x", logging.INFO, "f", 1, "fetching %s", (f"http://u:{PASSWORD}@h/",), None
    )
    MaskingFilter().filter(record)
    assert PASSWORD not in record.getMessage()


def test_masked_start_urls_are_restored_for_the_crawl_only():
    real = f"http://u:{PASSWORD}@h/"
    assert unmask_urls([mask_secrets(real), "http://other/"], [real]) == [real, "http://other/"]


def test_a_bad_neo4j_uri_is_reported_without_its_password(tmp_path):
    # A password and a port that is not a number: the old message echoed the whole URI.
    with pytest.raises(SettingsError) as error:
        settings_for(tmp_path, NEO4J_URI=f"bolt://neo4j:{PASSWORD}@localhost:notaport")
    assert "NEO4J_URI" in str(error.value)
    assert PASSWORD not in str(error.value)


def test_graph_sink_errors_name_the_server_but_not_the_password():
    from resources.graph_sink import GraphSinkError, Neo4jGraphSink

    sink = Neo4jGraphSink(
        uri=f"bolt://neo4j:{PASSWORD}@127.0.0.1:notaport", user="neo4j", password=PASSWORD
    )
    with pytest.raises(GraphSinkError) as error:
        sink.check()
    assert "127.0.0.1" in str(error.value)
    assert PASSWORD not in str(error.value)


def test_the_dagster_ui_binds_to_loopback_by_default():
    from rag_app.cli import build_parser
    from rag_core.settings import PROJECT_ROOT

    args = build_parser().parse_args(["dev"])
    assert args.host == "127.0.0.1"
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    dev_recipe = makefile.split("\ndev:", 1)[1].split("\n\n", 1)[0]
    assert "--host" not in dev_recipe and "-h " not in dev_recipe
