"""The import graph follows the layering in docs/architecture.md (*Packages and what each may
import*): every project module is parsed with ``ast`` (imports inside functions and under
TYPE_CHECKING count too), each import is mapped to the project package it names, and

- no package imports a package it may not (no upward import),
- the packages form no cycle,
- nothing in rag_core imports Dagster (the core must load without it) or a module that
  starts processes (subprocess, multiprocessing).

``python -m tests.test_architecture`` prints the package graph.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The code location's root assembles every area and the sensors into one Definitions: it is
# the one module above sensors, so it is its own node in the graph.
ROOT_MODULE = "rag_assets.definitions"
ROOT_NODE = "rag_assets.definitions (code location root)"

# package -> the project packages it may import (itself always). Bottom to top.
ALLOWED: dict[str, set[str]] = {
    "rag_core": set(),
    "demo_site": set(),  # the demo site and its server: imports nothing of the project
    "crawler": {"rag_core"},
    "resources": {"rag_core", "demo_site"},
    "rag_assets": {"resources", "rag_core"},
    "sensors": {"rag_assets", "resources", "rag_core"},
    ROOT_NODE: {"sensors", "rag_assets", "resources", "rag_core"},
    "rag_app": {
        "rag_core", "demo_site", "crawler", "resources", "rag_assets", "sensors", ROOT_NODE,
    },  # fmt: skip
}
# rag_core never starts a process: that is the application's job (rag_app).
PROCESS_MODULES = {"subprocess", "multiprocessing"}
PACKAGES = {"rag_core", "demo_site", "crawler", "resources", "rag_assets", "sensors", "rag_app"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def node_of(module: str) -> str | None:
    """The graph node of a project module; None for a module outside the project packages."""
    if module == ROOT_MODULE or module.startswith(ROOT_MODULE + "."):
        return ROOT_NODE
    top = module.split(".")[0]
    return top if top in PACKAGES else None


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """Every module ``path`` imports, absolute, with the line it is imported on."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = module_name(path).split(".")
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = own if is_package else own[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, node.lineno))
            # `from pkg import mod` imports the submodule pkg.mod
            found += [(f"{module}.{alias.name}", node.lineno) for alias in node.names]
    return found


def project_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def package_edges() -> tuple[dict[str, set[str]], list[str]]:
    """The package graph and every import that breaks ALLOWED or imports Dagster in rag_core."""
    graph: dict[str, set[str]] = defaultdict(set)
    problems: list[str] = []
    for path in project_files():
        source = node_of(module_name(path))
        graph[source]  # noqa: B018  (a package without imports is still a node)
        for module, line in imported_modules(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if source == "rag_core" and module.split(".")[0] == "dagster":
                problems.append(f"{where}: rag_core imports dagster")
            if source == "rag_core" and module.split(".")[0] in PROCESS_MODULES:
                problems.append(f"{where}: rag_core imports {module} (starts processes)")
            target = node_of(module)
            if target is None or target == source:
                continue
            graph[source].add(target)
            if target not in ALLOWED[source]:
                problems.append(f"{where}: {source} imports {module} ({target})")
    return graph, sorted(set(problems))


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of packages as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def describe(graph: dict[str, set[str]]) -> str:
    order = ["rag_app", ROOT_NODE, "sensors", "rag_assets", "resources", "crawler", "demo_site",
             "rag_core"]  # fmt: skip
    return "\n".join(
        f"{node:<44} -> {', '.join(sorted(graph.get(node, ()))) or '(nothing)'}"
        for node in order
    )


def test_every_project_module_is_checked():
    files = project_files()
    assert ROOT / "rag_core" / "settings.py" in files and ROOT / "rag_app" / "cli.py" in files
    assert all(node_of(module_name(p)) in ALLOWED for p in files)


def test_no_package_imports_above_itself():
    graph, problems = package_edges()
    print(describe(graph))
    assert problems == [], "\n".join(problems)


def test_packages_form_no_cycle():
    graph, _ = package_edges()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_checker_sees_an_upward_import_a_lazy_one_and_a_cycle(tmp_path, monkeypatch):
    """The checks fail where they should: a lazy upward import, a Dagster import in rag_core."""
    fake = tmp_path / "rag_core"
    fake.mkdir()
    (fake / "bad.py").write_text(
        "def f():\n    from rag_assets.definitions import defs\n    import dagster as dg\n"
        "import subprocess\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGES", {"rag_core"})
    graph, problems = package_edges()
    assert problems == [
        "rag_core/bad.py:2: rag_core imports rag_assets.definitions "
        "(rag_assets.definitions (code location root))",
        "rag_core/bad.py:2: rag_core imports rag_assets.definitions.defs "
        "(rag_assets.definitions (code location root))",
        "rag_core/bad.py:3: rag_core imports dagster",
        "rag_core/bad.py:4: rag_core imports subprocess (starts processes)",
    ]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle(graph) is None



def test_constants_name_what_the_definitions_define(tmp_path):
    """rag_core.constants spells the names; the definitions must use exactly these."""
    import dagster as dg

    from rag_assets.definitions import build_definitions
    from rag_core import constants as c
    from tests.helpers import settings_for

    defs = build_definitions(settings_for(tmp_path, USE_NEO4J="true", NEO4J_PASSWORD="x"))
    assets = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert assets == {
        c.CRAWLED_PAGES_ASSET, c.RAW_ITEMS_ASSET, c.DOCUMENTS_ASSET, c.CHUNKS_ASSET,
        c.EMBEDDINGS_ASSET, c.GRAPH_PAGES_ASSET, c.REMOVED_PAGES_ASSET,
    }  # fmt: skip
    jobs = {job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__")}
    assert jobs == {c.CRAWL_JOB, c.INGEST_JOB, c.PRUNE_JOB, c.GRAPH_CATCH_UP_JOB}
    assert {s.name for s in defs.sensors} == {c.RAW_ITEM_FILES_SENSOR, c.GRAPH_CATCH_UP_SENSOR}
    assert defs.resolve_job_def(c.INGEST_JOB).partitions_def.name == c.ITEMS_PARTITIONS
    assert defs.resolve_job_def(c.INGEST_JOB).tags[c.LANE_TAG] == c.LANE_INGEST
    assert defs.resolve_job_def(c.CRAWL_JOB).tags[c.LANE_TAG] == c.LANE_CRAWL
    finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
    finished.add(dg.DagsterRunStatus.CANCELED)
    in_flight = {dg.DagsterRunStatus(status) for status in c.IN_FLIGHT_STATUSES}
    assert dg.DagsterRunStatus.QUEUED in in_flight and not in_flight & finished

if __name__ == "__main__":
    graph, problems = package_edges()
    print(describe(graph))
    print("\n".join(problems) or "no upward import, no Dagster import in rag_core")
    cycle = find_cycle(graph)
    print(" -> ".join(cycle) if cycle else "no cycle between packages")
