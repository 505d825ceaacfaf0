"""Canonical URLs, item keys and the item file format (pure functions)."""

from __future__ import annotations

import json

import pytest

from rag_core.ids import canonical_url, chunk_id, content_hash, item_key
from rag_core.items import (
    CrawledItem,
    ItemFileError,
    key_from_file_name,
    read_item_file,
    write_item_atomically,
)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://Example.com/a?b=2&a=1", "http://example.com/a?a=1&b=2"),
        ("http://example.com:80/x", "http://example.com/x"),
        ("https://example.com:443/x#frag", "https://example.com/x"),
        ("http://example.com", "http://example.com/"),
        ("HTTP://EXAMPLE.COM/Path", "http://example.com/Path"),
    ],
)
def test_same_page_same_key(a, b):
    assert canonical_url(a) == canonical_url(b)
    assert item_key(a) == item_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://example.com/a", "http://example.com/b"),
        ("http://example.com:8000/a", "http://example.com:8001/a"),
        ("http://example.com/Path", "http://example.com/path"),
    ],
)
def test_different_pages_different_keys(a, b):
    assert item_key(a) != item_key(b)


def test_key_shape_and_stability():
    key = item_key("http://example.com/")
    assert len(key) == 16 and int(key, 16) >= 0
    assert key == "2a1b402420ef4657"  # stable across versions: partitions depend on it


def test_chunk_id_depends_on_item_position_and_text():
    base = chunk_id("k", 0, "text")
    assert base == chunk_id("k", 0, "text")
    assert (
        len({base, chunk_id("k", 1, "text"), chunk_id("j", 0, "text"), chunk_id("k", 0, "t")}) == 4
    )
    assert content_hash("a") != content_hash("b")


def test_write_then_read_round_trips_and_leaves_no_temp_file(tmp_path):
    item = CrawledItem(
        item_id=item_key("http://a.test/"),
        url="http://a.test/",
        status=200,
        html="<p>é</p>",
        links=["http://a.test/b"],
    )
    path = write_item_atomically(item, tmp_path)
    assert path.name == f"item_{item.item_id}.json"
    assert read_item_file(path) == item
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "is empty"),
        (b"   \n", "is empty"),
        (b'{"item_id": "0123456789abcdef", "url": "http://a', "not valid JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"item_id": "0123456789abcdef", "url": "http://a/"}', "missing field(s): status, html"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (
            b'{"item_id": "0123456789abcdef", "url": "u", "status": "200", "html": ""}',
            "'status' must be an integer",
        ),
        (
            b'{"item_id": "ffffffffffffffff", "url": "u", "status": 200, "html": ""}',
            "does not match",
        ),
    ],
)
def test_unusable_item_files_raise_with_the_reason(tmp_path, content, reason):
    path = tmp_path / "item_0123456789abcdef.json"
    path.write_bytes(content)
    with pytest.raises(ItemFileError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        read_item_file(path)


def test_unknown_fields_are_ignored(tmp_path):
    data = {"item_id": "0123456789abcdef", "url": "u", "status": 200, "html": "<p/>", "future": 1}
    path = tmp_path / "item_0123456789abcdef.json"
    path.write_text(json.dumps(data))
    assert read_item_file(path).html == "<p/>"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("item_0123456789abcdef.json", "0123456789abcdef"),
        (".tmp_abc.json", None),
        ("item_0123.json", None),
        ("item_0123456789abcdef.json.tmp", None),
    ],
)
def test_key_from_file_name(name, key):
    assert key_from_file_name(name) == key
