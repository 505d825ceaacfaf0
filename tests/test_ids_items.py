"""Canonical URLs, item keys and the item file format (pure functions)."""

from __future__ import annotations

import json

import pytest

from rag_core.constants import ITEMS_PARTITIONS
from rag_core.ids import (
    KEY_HASH_LENGTH,
    KEY_SLUG_CHARS,
    canonical_url,
    chunk_id,
    content_hash,
    item_key,
    legacy_item_key,
    url_slug,
)
from rag_core.items import (
    CrawledItem,
    ItemFileError,
    item_file_name,
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


def test_keys_are_readable_and_stable():
    # Pinned values: partitions, file names and rows depend on them, across re-crawls and
    # versions. The suffix is the start of the old 16-hex key (the same canonical URL hash).
    assert item_key("http://example.com/") == "example.com-2a1b4024"
    assert item_key("http://127.0.0.1:8765/docs/install/windows.html") == (
        "127.0.0.1:8765/docs/install/windows-" + legacy_item_key(
            "http://127.0.0.1:8765/docs/install/windows.html")[:8]
    )  # fmt: skip
    assert item_key("https://Docs.Example.com:443/Install/Windows/#top").startswith(
        "docs.example.com/install/windows-"
    )
    # A re-crawl meets the same URL in another spelling: still the same key.
    assert item_key("http://EXAMPLE.com:80/?b=2&a=1") == item_key("http://example.com/?a=1&b=2")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://example.com/Path", "http://example.com/path"),  # case of the path
        ("http://example.com/s?q=Foo", "http://example.com/s?q=foo"),  # case of a value
        ("http://example.com/s?a=1", "http://example.com/s?A=1"),  # case of a name
        ("http://example.com/a.html", "http://example.com/a"),  # same slug, other URL
        ("http://example.com/a b", "http://example.com/a-b"),
    ],
)
def test_urls_that_slug_alike_get_distinct_keys(a, b):
    assert url_slug(a) == url_slug(b)
    assert item_key(a) != item_key(b)


def test_query_order_is_one_page_but_other_values_are_another():
    # w3lib's canonical form sorts the query (as Scrapy's request fingerprint does).
    assert item_key("http://e.com/s?b=2&a=1") == item_key("http://e.com/s?a=1&b=2")
    assert item_key("http://e.com/s?a=1&b=2") != item_key("http://e.com/s?a=2&b=1")


def test_keys_are_unique_over_many_similar_urls():
    urls = [f"http://example.com/{p}/page?id={i}" for p in ("Docs", "docs") for i in range(3000)]
    long_prefix = "http://example.com/" + "a-very-long-folder-name/" * 10
    urls += [f"{long_prefix}{i}" for i in range(3000)]  # cut to the same slug
    keys = {item_key(u) for u in urls}
    assert len(keys) == len(urls)


ODD_URLS = [
    "http://example.com/" + "segment/" * 200 + "the-page.html",
    "http://example.com/" + "x" * 5000,
    "http://example.com/" + "%E4%B8%AD" * 300,
    "http://ja.example.com/ドキュメント/インストール.html",
    "http://example.com/café/über straße?q=naïve",
    "http://xn--bcher-kva.example/katalog",
    "http://example.com/a...b/..../c,d[1] e*f%25g%00h",
    "http://example.com/%0A%09tab/%07bell",
    "http://example.com/?" + "&".join(f"k{i}=v{i}" for i in range(500)),
    "http://example.com/---/.../",
    "http://example.com/​zero‮width",
]


@pytest.mark.parametrize("url", ODD_URLS)
def test_every_key_is_valid_for_dagster_and_short(url):
    from dagster._core.definitions.partitions.utils.base import INVALID_PARTITION_SUBSTRINGS

    key = item_key(url)
    assert not [s for s in INVALID_PARTITION_SUBSTRINGS if s in key], key
    # The UI's "add partition" dialog also refuses ',', '[', ']' and ' ', multi-partition
    # keys '|'; '%' and '*' are kept out for file names and globs.
    assert not set(key) & set(",[] |%*\x00"), key
    assert key.isprintable(), key
    assert len(key) <= KEY_SLUG_CHARS + 1 + KEY_HASH_LENGTH
    assert len(item_file_name(key).encode()) < 255  # a file name on every usual filesystem
    assert key_from_file_name(item_file_name(key)) == key
    assert item_key(url) == key


def test_non_ascii_paths_stay_readable():
    assert item_key("http://ja.example.com/ドキュメント/インストール.html").startswith(
        "ja.example.com/ドキュメント/インストール-"
    )
    assert item_key("http://xn--bcher-kva.example/katalog").startswith("bücher.example/katalog-")
    assert item_key("http://example.com/" + "segment/" * 200 + "the-page.html").startswith(
        "example.com/~"
    ) and "the-page-" in item_key("http://example.com/" + "segment/" * 200 + "the-page.html")


@pytest.mark.dagster
def test_dagster_accepts_every_key_as_a_dynamic_partition():
    import dagster as dg
    from dagster._core.definitions.partitions.utils.base import (
        raise_error_on_invalid_partition_key_substring,
    )

    keys = [item_key(u) for u in ODD_URLS]
    # Dagster's own check (applied to static keys; dynamic keys are not checked on add, so a
    # bad one would only fail later, in the UI's range selection or the CLI).
    raise_error_on_invalid_partition_key_substring(keys)
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(ITEMS_PARTITIONS, keys)
        assert instance.get_dynamic_partitions(ITEMS_PARTITIONS) == keys
        items = dg.DynamicPartitionsDefinition(name=ITEMS_PARTITIONS)
        assert items.get_partition_keys(dynamic_partitions_store=instance) == keys


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
    assert item.item_id == "a.test-" + legacy_item_key("http://a.test/")[:8]
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
        ("item_0123456789abcdef.json", "0123456789abcdef"),  # the first scheme, still listed
        ("item_docs.test%2Finstall%2Fwindows-2a1b4024.json", "docs.test/install/windows-2a1b4024"),
        ("item_example.com-2a1b4024.json", "example.com-2a1b4024"),
        ("item_docs.test%2Fa%2520b-2a1b4024.json", None),  # a '%' no key holds
        ("item_docs.test%2Finstall-2a1b402.json", None),  # suffix too short
        (".removals.json", None),
        (".tmp_abc.json", None),
        ("item_0123.json", None),
        ("item_0123456789abcdef.json.tmp", None),
    ],
)
def test_key_from_file_name(name, key):
    assert key_from_file_name(name) == key
