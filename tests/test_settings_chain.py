"""The settings chain: declaration (rag_core/settings.py) -> read by the code -> documented.

Every declared variable is read somewhere (a Settings field that code reads, or a secret read
by name when used); every setting the code reads (a ``settings.x`` attribute, an environment
name passed to ``secret``/``dg.EnvVar``/``os.environ``) is declared; the README's settings
table is the one generated from the declarations.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from rag_core import settings as settings_module
from rag_core.settings import (
    PROJECT_ROOT,
    SETTINGS_TABLE_BEGIN,
    VARIABLES,
    Settings,
    default,
    settings_table,
    with_settings_table,
)

PACKAGES = ("rag_core", "rag_app", "rag_assets", "sensors", "resources", "crawler")
# Environment names the code reads that are not platform settings: Dagster's own.
EXTERNAL_ENV = {"DAGSTER_HOME"}
# Declared, read by the scale-out branch (issue 14: the sensor's in-flight limit); until that
# is merged nothing reads it. Remove the entry when it is.
NOT_YET_READ: set[str] = set()  # declared settings waiting for their reader (none now)
ENV_READERS = {"secret", "EnvVar", "getenv"}


def _trees() -> list[tuple[Path, ast.AST]]:
    files = sorted(p for pkg in PACKAGES for p in (PROJECT_ROOT / pkg).rglob("*.py"))
    return [(p, ast.parse(p.read_text(), filename=str(p))) for p in files]


def _env_name(node: ast.AST) -> str | None:
    """The environment name an argument stands for: a string, or a constant of settings.py."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and isinstance(getattr(settings_module, node.id, None), str):
        return getattr(settings_module, node.id)
    return None


def _is_settings(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "settings") or (
        isinstance(node, ast.Attribute) and node.attr == "settings"
    )


def reads() -> tuple[set[str], dict[str, list[str]], dict[str, list[str]]]:
    """(every attribute name read anywhere, settings.<attr> reads, environment names read)."""
    attributes: set[str] = set()
    settings_attrs: dict[str, list[str]] = {}
    env_names: dict[str, list[str]] = {}
    for path, tree in _trees():
        where = str(path.relative_to(PROJECT_ROOT))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                attributes.add(node.attr)
                # In crawler/ ``settings`` is Scrapy's: the crawl resource hands the platform's
                # values to Scrapy on its command line.
                if _is_settings(node.value) and not where.startswith("crawler/"):
                    settings_attrs.setdefault(node.attr, []).append(f"{where}:{node.lineno}")
            elif isinstance(node, ast.Call) and node.args:
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                environ_get = (
                    name == "get"
                    and isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Attribute)
                    and func.value.attr == "environ"
                )
                if name in ENV_READERS or environ_get:
                    env = _env_name(node.args[0])
                    if env:
                        env_names.setdefault(env, []).append(f"{where}:{node.lineno}")
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
                if node.value.attr == "environ" and (env := _env_name(node.slice)):
                    env_names.setdefault(env, []).append(f"{where}:{node.lineno}")
    return attributes, settings_attrs, env_names


FIELDS = {f.name for f in dataclasses.fields(Settings)}
DECLARED = {var.name for var in VARIABLES}
SETTINGS_MEMBERS = FIELDS | {
    name for name, value in vars(Settings).items() if isinstance(value, property)
}


def test_every_settings_field_is_declared_once():
    names = [var.name for var in VARIABLES]
    assert len(names) == len(set(names)), "a variable is declared twice"
    assert {f.upper() for f in FIELDS} <= DECLARED


def test_every_declared_setting_is_read():
    attributes, _, env_names = reads()
    unread = []
    for var in VARIABLES:
        field = var.name.lower()
        read = field in attributes if field in FIELDS else var.name in env_names
        if not read and var.name not in NOT_YET_READ:
            unread.append(var.name)
    assert unread == [], f"declared in rag_core/settings.py but read nowhere: {unread}"


def test_not_yet_read_lists_only_unread_declared_settings():
    attributes, _, env_names = reads()
    assert NOT_YET_READ <= DECLARED
    for name in NOT_YET_READ:
        assert name.lower() not in attributes and name not in env_names, f"{name} is read now"


def test_every_setting_read_is_declared():
    _, settings_attrs, env_names = reads()
    undeclared = {a: w for a, w in settings_attrs.items() if a not in SETTINGS_MEMBERS}
    assert undeclared == {}, f"settings.<name> read but not declared: {undeclared}"
    unknown = {n: w for n, w in env_names.items() if n not in DECLARED | EXTERNAL_ENV}
    assert unknown == {}, f"environment read but not declared: {unknown}"


def test_the_checks_see_an_unread_and_an_undeclared_setting(tmp_path, monkeypatch):
    """The scan finds what it must: a settings attribute and an env name that are undeclared."""
    probe = tmp_path / "rag_app"
    probe.mkdir()
    (probe / "probe.py").write_text(
        "from rag_core.settings import secret\n"
        "def f(settings):\n    return settings.not_a_setting, secret('NOT_DECLARED')\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(__import__(__name__, fromlist=["x"]), "PACKAGES", ("rag_app",))
    attributes, settings_attrs, env_names = reads()
    assert settings_attrs == {"not_a_setting": ["rag_app/probe.py:3"]}
    assert env_names == {"NOT_DECLARED": ["rag_app/probe.py:3"]}
    assert "chunk_size_tokens" not in attributes  # so CHUNK_SIZE_TOKENS would count as unread


def test_defaults_are_written_once():
    from rag_app import embedding_server
    from resources.embedder import EmbedderResource
    from sensors import raw_item_files

    assert EmbedderResource().batch_size == default("EMBEDDING_BATCH_SIZE")
    assert embedding_server.DEFAULT_BATCH_SIZE == default("EMBEDDING_BATCH_SIZE")
    assert raw_item_files.DEFAULT_MAX_ITEMS == default("MAX_BATCH_ITEMS")
    assert raw_item_files.DEFAULT_MAX_BYTES == default("MAX_BATCH_MB") * 1024 * 1024
    with pytest.raises(KeyError):
        default("NO_SUCH_SETTING")


def test_resource_defaults_are_the_settings_defaults():
    """A resource built without the settings (a test, `dagster asset materialize` with its
    own config) behaves as the defaults say: its field defaults come from the declarations."""
    from resources.chunker import TokenChunker
    from resources.embedder import EmbedderResource
    from resources.scrapy_crawler import ScrapyCrawler

    fields = {
        TokenChunker: {
            "chunk_size_tokens": "CHUNK_SIZE_TOKENS",
            "chunk_overlap_tokens": "CHUNK_OVERLAP_TOKENS",
            "context_header": "CHUNK_CONTEXT_HEADER",
            "min_tokens": "CHUNK_MIN_TOKENS",
        },
        EmbedderResource: {
            "provider": "EMBEDDING_PROVIDER",
            "dtype": "EMBEDDING_DTYPE",
            "batch_size": "EMBEDDING_BATCH_SIZE",
            "torch_threads": "TORCH_NUM_THREADS",
            "slowdown_ms": "EMBEDDING_SLOWDOWN_MS",
        },
        ScrapyCrawler: {
            "concurrency": "CRAWL_CONCURRENCY",
            "max_page_chars": "MAX_PAGE_CHARS",
            "demo_site_port": "DEMO_SITE_PORT",
            "max_download_bytes": "CRAWL_MAX_DOWNLOAD_BYTES",
            "max_links_per_page": "CRAWL_MAX_LINKS_PER_PAGE",
            "max_url_length": "CRAWL_MAX_URL_LENGTH",
        },
    }
    for resource, names in fields.items():
        declared = resource.model_fields  # pydantic: the class's field defaults
        for field_name, setting in names.items():
            assert declared[field_name].default == default(setting), (resource, field_name)


def test_readme_settings_table_is_generated_from_the_declarations():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert SETTINGS_TABLE_BEGIN in readme
    assert with_settings_table(readme) == readme, "run: make env-example"
    table = settings_table()
    assert all(f"| `{var.name}` |" in table for var in VARIABLES)


def test_a_drifted_readme_table_is_caught():
    readme = (PROJECT_ROOT / "README.md").read_text()
    drifted = readme.replace("| `LOG_LEVEL` | `INFO` |", "| `LOG_LEVEL` | `DEBUG` |")
    assert drifted != readme and with_settings_table(drifted) == readme
