"""The import graph of the product apps (accounts, billing, sessions, realtime_saas).

Every module is parsed, not imported: an edge is any `import`/`from … import` in it, at module
level or inside a function (a function-level import still ties the two modules together; it only
hides the knot). Imports under `if TYPE_CHECKING:` never run and are left out. Two rules:

- no cycle among product modules;
- the sessions domain never imports the API layer (`sessions.api…`), STYLE.md rule 17.

Sessions' known offenders were listed, edge by edge, in KNOWN_SESSIONS_DEBT (issue 14), each
fix finished by deleting its lines (the test fails on a listed edge that is gone). The list is
now empty: any edge that closes a cycle or reaches into `sessions.api` fails.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("accounts", "billing", "sessions", "realtime_saas")
API = "sessions.api"

# (importer, imported): sessions' known offenders, to be paid off by issue 14 items 2 and 3.
# Delete a line when its import is gone (the last test says which); never add one.
KNOWN_SESSIONS_DEBT: set[tuple[str, str]] = set()  # paid off by issue 14 (models package, presenters)


def product_modules() -> dict[str, Path]:
    """Dotted name → file, for every module of the product apps except migrations and tests."""
    modules = {}
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts or "tests" in parts or parts[-1].startswith("test_"):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those only run by type checkers."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _owner(name: str, modules: dict[str, Path]) -> str | None:
    """The deepest product module that `name` (a module, or an object in one) lives in."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(modules: dict[str, Path] | None = None) -> dict[str, dict[str, int]]:
    """importer → {imported product module: first line that imports it}."""
    modules = product_modules() if modules is None else modules
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        edges = graph.setdefault(name, {})
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import mod` imports the module pkg.mod; `from mod import obj`, mod.
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                imported = _owner(target, modules)
                if imported is not None and imported != name:
                    edges.setdefault(imported, node.lineno)
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The cycles of the graph: its strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def is_domain_to_api(importer: str, imported: str) -> bool:
    def in_api(module: str) -> bool:
        return module == API or module.startswith(API + ".")

    return importer.startswith("sessions.") and not in_api(importer) and in_api(imported)


def without(graph: dict[str, dict[str, int]], edges: set[tuple[str, str]]) -> dict[str, dict[str, int]]:
    return {a: {b: line for b, line in targets.items() if (a, b) not in edges} for a, targets in graph.items()}


def describe(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    members = set(component)
    modules = product_modules()
    lines = [
        f"  {a} -> {b}  ({modules[a].relative_to(ROOT)}:{line})"
        for a in component for b, line in sorted(graph[a].items()) if b in members
    ]
    return "cycle among " + ", ".join(component) + ":\n" + "\n".join(lines)


# --- the rules ---------------------------------------------------------------------------------


def test_the_graph_sees_module_level_function_level_and_relative_imports():
    graph = import_graph()
    assert "billing.services.ledger" in graph["billing.services.holds"]  # from billing.services.ledger import …
    assert "billing.services.checkout" in graph["billing.services.stripe_events"]  # from billing.services import checkout
    assert "billing.models" in graph["billing.apps"]  # inside wallet_panel()
    assert "realtime_saas.celery" in graph["realtime_saas"]  # from .celery import app


def test_the_walker_finds_a_cycle_hidden_in_a_function_and_skips_type_checking(tmp_path):
    files = {
        "app/__init__.py": "",
        "app/a.py": "from app import b\n",
        "app/b.py": "def later():\n    from app.c import thing\n",
        "app/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from app import d\nfrom . import a\n",
        "app/d.py": "import app.c\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = {name[:-3].replace("/__init__", "").replace("/", "."): tmp_path / name for name in files}
    graph = import_graph(modules)
    assert graph == {"app": {}, "app.a": {"app.b": 1}, "app.b": {"app.c": 2}, "app.c": {"app.a": 4},
                     "app.d": {"app.c": 1}}
    assert strongly_connected(graph) == [["app.a", "app.b", "app.c"]]


def test_no_import_cycle_among_product_modules():
    graph = without(import_graph(), KNOWN_SESSIONS_DEBT)
    cycles = strongly_connected(graph)
    assert not cycles, "\n\n".join(describe(graph, component) for component in cycles)


def test_the_sessions_domain_never_imports_the_api_layer():
    graph = without(import_graph(), KNOWN_SESSIONS_DEBT)
    modules = product_modules()
    offenders = [
        f"{a} -> {b}  ({modules[a].relative_to(ROOT)}:{line})"
        for a, targets in sorted(graph.items()) for b, line in sorted(targets.items()) if is_domain_to_api(a, b)
    ]
    assert not offenders, "the sessions domain imports its API layer:\n" + "\n".join(offenders)


def test_billing_accounts_and_realtime_saas_have_no_debt():
    assert all(a.startswith("sessions.") and b.startswith("sessions.") for a, b in KNOWN_SESSIONS_DEBT)


def test_every_known_debt_edge_still_exists_and_is_still_debt():
    graph = import_graph()
    in_cycles = {frozenset(c) for c in strongly_connected(graph)}
    stale = [
        f"{a} -> {b}"
        for a, b in sorted(KNOWN_SESSIONS_DEBT)
        if b not in graph.get(a, {})
        or not (is_domain_to_api(a, b) or any({a, b} <= component for component in in_cycles))
    ]
    assert not stale, "paid off: delete these lines from KNOWN_SESSIONS_DEBT:\n" + "\n".join(stale)
