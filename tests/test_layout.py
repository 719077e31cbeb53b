"""The layout's rules (README, Layout), read from the source with `ast`: no import cycles, services
never import tasks, the kernel and energy import no app downstream of them, domain modules import
no door, no module over 600 lines, no name prefix standing in for a package.

Every import counts, also one inside a function: an import moved into a function to dodge a cycle
is still the cycle. Exempt are `AppConfig.ready()` (where apps plug into each other's registries
by design) and `if TYPE_CHECKING:` blocks (never run). A package's `__init__` is not counted as
imported by its submodules' importers: `energy.models` gathers its submodules for Django.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("joulepoint", "energy", "automations", "billing", "mlops")
MAX_LINES = 600
# The kernel's configuration modules mount every app's routes; nothing else in it names an app.
KERNEL_CONFIGURATION = {"joulepoint.urls", "joulepoint.routing"}
DOOR_NAMES = {"views", "consumers", "api", "urls", "routing", "admin", "dashboard", "asgi", "wsgi"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    found = {}
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


def _exempt(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
        if isinstance(node, ast.FunctionDef) and node.name == "ready":
            return True
    return False


def _target(name: str) -> str | None:
    """The project module an import names: the module itself, or the package it comes from."""
    known = modules()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


@cache
def imports() -> dict[str, set[str]]:
    """module → the project modules it imports (at any depth, except the exempt places)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in modules().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or _exempt(node, parents):
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod.
                names = [f"{base}.{alias.name}" for alias in node.names]
            for name in names:
                target = _target(name)
                if target and target != module:
                    graph[module].add(target)
    return graph


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(modules()):
        if node not in index:
            visit(node)
    return found


def _is_door(module: str) -> bool:
    parts = module.split(".")
    return bool(DOOR_NAMES & set(parts)) or "management" in parts


def _is_tasks(module: str) -> bool:
    return module.split(".")[-1] == "tasks"


def test_no_import_cycles():
    assert _cycles() == []


def test_only_tasks_modules_and_the_celery_app_import_tasks():
    """A service enqueues a task by name (joulepoint.platform.enqueue), never by importing it."""
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in imports().items()
        for target in targets
        if _is_tasks(target) and not _is_tasks(module)
    )
    assert offenders == []


def test_the_kernel_imports_no_domain_app():
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in imports().items()
        if module.split(".")[0] == "joulepoint" and module not in KERNEL_CONFIGURATION
        for target in targets
        if target.split(".")[0] != "joulepoint"
    )
    assert offenders == []


def test_energy_imports_no_downstream_app():
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in imports().items()
        if module.split(".")[0] == "energy"
        for target in targets
        if target.split(".")[0] in {"automations", "billing", "mlops"}
    )
    assert offenders == []


def test_domain_modules_import_no_door():
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in imports().items()
        if not _is_door(module) and not _is_tasks(module) and module.split(".")[-1] != "apps"
        for target in targets
        if _is_door(target)
    )
    assert offenders == []


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_over_the_line_limit(module):
    lines = len(modules()[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it by concern"


def test_no_name_prefix_stands_in_for_a_package():
    """`pq_models.py` beside `pq_services.py` is a package (`power_quality/`) in disguise."""
    by_folder: dict[tuple[Path, str], list[str]] = defaultdict(list)
    for path in modules().values():
        stem, sep, _ = path.stem.partition("_")
        if sep and not path.stem.startswith("_"):
            by_folder[(path.parent, stem)].append(path.name)
    shared = {f"{folder.relative_to(ROOT)}/{prefix}_*": names for (folder, prefix), names in by_folder.items()}
    assert {key: names for key, names in shared.items() if len(names) > 1} == {}


def test_the_rules_see_the_code():
    """The graph is read from the real tree (guards the checks above from passing on nothing)."""
    graph = imports()
    assert "energy.ingest.store" in graph["energy.api.views"] or any(
        target.startswith("energy.ingest") for target in graph["energy.api.views"]
    )
    assert "energy.models.devices" in graph["energy.analytics.models"]


# Packages every app may have without the README naming them: doors and Django's conventions.
UNNAMED_PACKAGES = {"api", "management", "commands", "migrations", "plugins"}
DESCRIPTION_COLUMN = 25


def _readme_layout() -> set[Path]:
    """The folders and files the README's Layout block names, as paths."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    named: set[Path] = set()
    stack: list[str] = []
    for line in block.splitlines():
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if not stripped or indent >= DESCRIPTION_COLUMN:
            continue  # a description's continuation
        depth = indent // 2
        stack = stack[:depth]
        names = re.split(r"\s{2,}", stripped)[0].split()  # the names, before the description
        for name in names:
            if "<" in name:
                continue  # a pattern (tests/<app>/)
            named.add(Path(*stack, name.rstrip("/")))
        if len(names) == 1 and names[0].endswith("/"):
            stack.append(names[0].rstrip("/"))
    return named


def test_the_readme_layout_names_what_exists():
    missing = sorted(str(path) for path in _readme_layout() if not (ROOT / path).exists())
    assert missing == []


def test_the_readme_layout_names_every_package():
    named = _readme_layout()
    packages = {
        path.parent.relative_to(ROOT)
        for app in APPS
        for path in (ROOT / app).rglob("__init__.py")
        if not UNNAMED_PACKAGES & set(path.parent.relative_to(ROOT).parts)
    }
    assert sorted(str(package) for package in packages - named) == []
