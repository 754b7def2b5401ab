"""Reconciliation's modules depend on each other one way, and none reaches into another's privates
(docs/reconciliation.md, *Code*): tasks → reconcile → sweep → checks → streams / flags → locks → models."""

import ast
from pathlib import Path

from tests.core.test_architecture import import_graph, product_modules

PACKAGE = "sessions.reconciliation"
ROOT = Path(__file__).resolve().parents[2]
# A module may import only modules of a lower layer; streams and flags know nothing of each other.
LAYERS = {"locks": 0, "streams": 1, "flags": 1, "checks": 2, "sweep": 3, "reconcile": 4}


def _package_modules() -> dict[str, Path]:
    return {name: path for name, path in product_modules().items() if name.startswith(PACKAGE + ".")}


def test_the_seams_depend_one_way():
    graph = import_graph()
    wrong = []
    for short, layer in LAYERS.items():
        for imported in graph[f"{PACKAGE}.{short}"]:
            target = imported.removeprefix(PACKAGE + ".")
            if target in LAYERS and LAYERS[target] >= layer:
                wrong.append(f"{short} -> {target}")
    assert wrong == []
    # Nothing below the tasks imports them, and the seams never import the key-mode check.
    importers_of_tasks = [a for a, targets in graph.items() if f"{PACKAGE}.tasks" in targets]
    assert all(not a.startswith(PACKAGE + ".") for a in importers_of_tasks)
    assert all(f"{PACKAGE}.keymode" not in graph[f"{PACKAGE}.{short}"] for short in LAYERS)


def test_no_module_uses_another_modules_private_names():
    modules = _package_modules()
    offenders = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        siblings = set()  # local names bound to sibling modules: `from sessions.reconciliation import x`
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE):
                for alias in node.names:
                    if alias.name.startswith("_"):
                        offenders.append(f"{name}: from {node.module} import {alias.name}")
                    if f"{node.module}.{alias.name}" in modules:
                        siblings.add(alias.asname or alias.name)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in siblings
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offenders.append(f"{name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert offenders == []


def test_the_token_columns_come_from_the_one_abstract_model():
    from sessions.models import TokenColumns, TokenCounts
    from sessions.reconciliation.reconcile import METERED_COLUMNS, USAGE_COLUMNS
    from tests.reconciliation.conftest import CLASS_MAP

    assert list(METERED_COLUMNS) == list(TokenCounts.CLASSES)
    assert list(METERED_COLUMNS.values()) == [field.name for field in TokenColumns._meta.get_fields()]
    assert USAGE_COLUMNS == CLASS_MAP  # the Usage API's naming, as the tests' fake speaks it
