"""Settings: defaults, validation messages that name the variable, .env handling."""

from __future__ import annotations

import pytest

from rag_core.settings import VARIABLES, SettingsError, env_example, load_settings


def test_defaults_are_valid(tmp_path):
    settings = load_settings({}, dotenv=tmp_path / "none")
    assert settings.pipeline_mode == "streaming"
    assert settings.embedding_provider == "sentence-transformers"
    assert settings.embedding_batch_size == 64
    assert settings.use_neo4j is False
    assert settings.raw_dir == settings.data_dir / "raw"


@pytest.mark.parametrize(
    ("name", "value", "accepts"),
    [
        ("PIPELINE_MODE", "fast", "streaming or batch"),
        ("EMBEDDING_BATCH_SIZE", "0", "at least 1"),
        ("EMBEDDING_BATCH_SIZE", "lots", "whole number"),
        ("CLOSESPIDER_PAGECOUNT", "-3", "at least 0"),
        ("USE_NEO4J", "maybe", "true or false"),
        ("EMBEDDING_PROVIDER", "openai", "sentence-transformers"),
        ("EMBEDDING_DTYPE", "int8", "auto or float32 or bfloat16"),
        ("START_URLS", "ftp://example.com", "http(s) URLs"),
        ("ALLOWED_DOMAINS", "http://example.com", "host names"),
        ("CRAWL_EXCLUDE", "([", "regular expressions"),
        ("LOG_LEVEL", "LOUD", "DEBUG, INFO"),
        ("CHUNK_SIZE_TOKENS", "8", "at least 16"),
    ],
)
def test_bad_value_names_variable_value_and_rule(tmp_path, name, value, accepts):
    with pytest.raises(SettingsError) as info:
        load_settings({name: value}, dotenv=tmp_path / "none")
    message = str(info.value)
    assert message.startswith(f"{name}={value!r} is not valid")
    assert accepts in message


def test_overlap_must_stay_below_half_the_chunk(tmp_path):
    with pytest.raises(SettingsError, match="CHUNK_OVERLAP_TOKENS=64"):
        load_settings({"CHUNK_SIZE_TOKENS": "128", "CHUNK_OVERLAP_TOKENS": "64"}, tmp_path / "x")


def test_dotenv_is_read_and_environment_wins(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("EMBEDDING_BATCH_SIZE=8\nPIPELINE_MODE=batch\n")
    settings = load_settings({"PIPELINE_MODE": "streaming"}, dotenv=dotenv)
    assert settings.embedding_batch_size == 8
    assert settings.pipeline_mode == "streaming"


def test_lists_are_parsed(tmp_path):
    settings = load_settings(
        {"START_URLS": "https://a.example/, http://b.example:8080/docs", "ALLOWED_DOMAINS": ""},
        dotenv=tmp_path / "none",
    )
    assert settings.start_urls == ("https://a.example/", "http://b.example:8080/docs")


def test_env_example_lists_every_variable_with_its_default():
    text = env_example()
    for var in VARIABLES:
        assert f"\n{var.name}={var.default}\n" in f"\n{text}"


def test_env_example_file_is_up_to_date():
    from rag_core.settings import PROJECT_ROOT

    assert (PROJECT_ROOT / "env.example").read_text() == env_example(), "run: make env-example"
