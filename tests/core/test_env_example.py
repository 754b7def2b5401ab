"""`.env.example` lists exactly the environment variables realtime_saas/settings.py reads.

settings.py is parsed, not imported, so a variable read only on one branch (DEBUG off, PostgreSQL,
Redis) counts too. A read is a call of the `environ.Env()` object (`env("X")`, `env.str("X")`,
`env.db_url("X")`, …), of `os.environ`/`os.getenv`, or of a helper defined in settings.py that
passes its argument on to one of those (`env_bool("X", …)`, or a prefixing one such as
`def _supervisor_setting(name): return env.float(f"SUPERVISOR_{name}")`); the name may come from a
constant, an f-string over a helper's parameter, or a `for` loop or comprehension over literal
names. A read whose name cannot be worked out fails the test: the collector never guesses.

A variable is listed in .env.example by a line `NAME=value`, or `# NAME=value` for one whose empty
value would not be its default. A verbatim copy of .env.example configures the defaults.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "realtime_saas" / "settings.py"
ENV_EXAMPLE = ROOT / ".env.example"

# Methods of environ.Env that do not read a variable.
NOT_READS = {"read_env", "parse_value", "escape_proxy", "smart_cast"}
ASSIGNMENT = re.compile(r"^(?:#\s*)?([A-Z][A-Z0-9_]*)=")


class UnknownName(Exception):
    """A read whose variable name is not a literal, a known parameter or a literal loop variable."""


def _param(index: int) -> str:
    """A helper's parameter inside a name template."""
    return f"\0{index}\0"


def _fill(template: str, values: dict[int, str]) -> str:
    return re.sub(r"\0(\d+)\0", lambda m: values[int(m.group(1))], template)


class SettingsReads:
    """Every variable name settings.py reads (see the module docstring)."""

    def __init__(self, source: str, filename: str = "settings.py"):
        self.tree = ast.parse(source, filename=filename)
        self.filename = filename
        self.env_names = {"env"} | {
            target.id
            for node in ast.walk(self.tree) if isinstance(node, ast.Assign) and _is_env_constructor(node.value)
            for target in node.targets if isinstance(target, ast.Name)
        }
        # Module-level names assigned once, to a literal: a loop may run over them, a read may use them.
        assigned = [
            (target.id, node.value)
            for node in self.tree.body if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(target, ast.Name)
        ]
        counts = {name: sum(1 for n, _ in assigned if n == name) for name, _ in assigned}
        self.constants = {
            name: value for name, value in assigned
            if counts[name] == 1 and isinstance(value, ast.Constant | ast.Tuple | ast.List | ast.Set | ast.Dict)
        }
        # helper name -> (its parameter names, the name templates it reads)
        self.helpers: dict[str, tuple[list[str], set[str]]] = {}
        functions = [n for n in self.tree.body if isinstance(n, ast.FunctionDef)]
        changed = True
        while changed:  # helpers may call helpers defined before or after them
            changed = False
            for function in functions:
                params = [a.arg for a in function.args.posonlyargs + function.args.args + function.args.kwonlyargs]
                bindings = {name: [_param(i)] for i, name in enumerate(params)}
                templates = set()
                for node in function.body:
                    templates |= self._reads(node, bindings)
                templates = {t for t in templates if "\0" in t}
                if templates and self.helpers.get(function.name, ([], set()))[1] != templates:
                    self.helpers[function.name] = (params, templates)
                    changed = True

    def names(self) -> set[str]:
        found: set[str] = set()
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef):
                # Constants read inside helpers (not through their parameters) count too.
                params = [a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
                bindings = {name: [_param(i)] for i, name in enumerate(params)}
                found |= {t for t in self._reads(node, bindings) if "\0" not in t}
            else:
                found |= self._reads(node, {})
        return found

    # --- the walk ----------------------------------------------------------------------------

    def _reads(self, node: ast.AST, bindings: dict[str, list[str]]) -> set[str]:
        """Names (or templates) read anywhere under `node`, with loop variables bound."""
        found: set[str] = set()
        if isinstance(node, ast.For | ast.AsyncFor):
            inner = {**bindings, **self._loop_bindings(node.target, node.iter, bindings)}
            found |= self._reads(node.iter, bindings)
            for statement in node.body + node.orelse:
                found |= self._reads(statement, inner)
            return found
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            inner = dict(bindings)
            for generator in node.generators:
                found |= self._reads(generator.iter, inner)
                inner.update(self._loop_bindings(generator.target, generator.iter, inner))
            parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            for part in parts + [cond for g in node.generators for cond in g.ifs]:
                found |= self._reads(part, inner)
            return found
        if isinstance(node, ast.Call):
            found |= self._call_reads(node, bindings)
        if isinstance(node, ast.Subscript) and _is_os_environ(node.value):
            found |= set(self._values(node.slice, bindings, node))
        for child in ast.iter_child_nodes(node):
            found |= self._reads(child, bindings)
        return found

    def _call_reads(self, call: ast.Call, bindings: dict[str, list[str]]) -> set[str]:
        func = call.func
        is_env_read = (isinstance(func, ast.Name) and func.id in self.env_names) or (
            isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
            and func.value.id in self.env_names and func.attr not in NOT_READS
        )
        is_os_read = (isinstance(func, ast.Attribute) and func.attr == "get" and _is_os_environ(func.value)) or (
            isinstance(func, ast.Attribute) and func.attr == "getenv"
            and isinstance(func.value, ast.Name) and func.value.id == "os"
        )
        if is_env_read or is_os_read:
            name = call.args[0] if call.args else _keyword(call, "var") or _keyword(call, "key")
            if name is None:
                raise UnknownName(f"{self.filename}:{call.lineno}: a read without a variable name")
            return set(self._values(name, bindings, call))
        if isinstance(func, ast.Name) and func.id in self.helpers:
            params, templates = self.helpers[func.id]
            used = sorted({int(i) for t in templates for i in re.findall(r"\0(\d+)\0", t)})
            choices = []
            for i in used:
                arg = call.args[i] if i < len(call.args) else _keyword(call, params[i])
                if arg is None:
                    raise UnknownName(f"{self.filename}:{call.lineno}: {func.id}() without its {params[i]!r}")
                choices.append(self._values(arg, bindings, call))
            return {
                _fill(template, dict(zip(used, combination, strict=True)))
                for combination in itertools.product(*choices) for template in templates
            }
        return set()

    def _values(self, node: ast.expr, bindings: dict[str, list[str]], at: ast.AST) -> list[str]:
        """Every string `node` can be: a constant, a bound name, or an f-string/concatenation of those."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.Name) and node.id in bindings:
            return bindings[node.id]
        if isinstance(node, ast.Name) and isinstance(self.constants.get(node.id), ast.Constant):
            return self._values(self.constants[node.id], bindings, at)
        if isinstance(node, ast.JoinedStr):
            parts = []
            for value in node.values:
                if isinstance(value, ast.FormattedValue) and value.format_spec is None and value.conversion == -1:
                    parts.append(self._values(value.value, bindings, at))
                else:
                    parts.append(self._values(value, bindings, at))
            return ["".join(p) for p in itertools.product(*parts)]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return [a + b for a in self._values(node.left, bindings, at) for b in self._values(node.right, bindings, at)]
        raise UnknownName(f"{self.filename}:{getattr(at, 'lineno', '?')}: cannot tell which variable "
                          f"`{ast.unparse(node)}` names")

    def _loop_bindings(self, target: ast.expr, iterable: ast.expr, bindings) -> dict[str, list[str]]:
        """Loop variables over a literal sequence of names (or of tuples holding names), a dict's
        keys or items, or a module-level name bound to one of those."""
        items: list[ast.expr] | None = None
        if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Attribute) \
                and iterable.func.attr == "items" and not iterable.args:
            mapping = self._literal(iterable.func.value)
            if isinstance(mapping, ast.Dict):
                # A None key is a `**spread`: it names nothing.
                items = [ast.Tuple(elts=[k, v]) for k, v in zip(mapping.keys, mapping.values, strict=True)
                         if k is not None]
        else:
            literal = self._literal(iterable)
            if isinstance(literal, ast.Dict):
                items = [k for k in literal.keys if k is not None]
            elif isinstance(literal, ast.Tuple | ast.List | ast.Set):
                items = literal.elts
        if items is None:
            return {}
        found: dict[str, list[str]] = {}
        for item in items:
            for name, value in _unpack(target, item):
                try:
                    found.setdefault(name, []).extend(self._values(value, bindings, item))
                except UnknownName:
                    continue  # not a string: a default value, never a variable name
        return found

    def _literal(self, node: ast.expr) -> ast.expr:
        return self.constants.get(node.id, node) if isinstance(node, ast.Name) else node


def _unpack(target: ast.expr, value: ast.expr) -> list[tuple[str, ast.expr]]:
    if isinstance(target, ast.Name):
        return [(target.id, value)]
    if isinstance(target, ast.Tuple | ast.List) and isinstance(value, ast.Tuple | ast.List):
        return [pair for t, v in zip(target.elts, value.elts, strict=False) for pair in _unpack(t, v)]
    return []


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_env_constructor(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Env"


def _is_os_environ(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name) \
        and node.value.id == "os"


def settings_reads() -> set[str]:
    return SettingsReads(SETTINGS.read_text(), filename=str(SETTINGS.relative_to(ROOT))).names()


def listed_in_env_example() -> list[str]:
    return [m.group(1) for line in ENV_EXAMPLE.read_text().splitlines() if (m := ASSIGNMENT.match(line.strip()))]


# --- the rule ----------------------------------------------------------------------------------


def test_env_example_lists_every_variable_settings_reads_and_no_other():
    read, listed = settings_reads(), set(listed_in_env_example())
    assert not read - listed, f"read by settings.py, missing from .env.example: {sorted(read - listed)}"
    assert not listed - read, f"in .env.example, never read by settings.py: {sorted(listed - read)}"


def test_env_example_lists_each_variable_once():
    listed = listed_in_env_example()
    assert sorted({n for n in listed if listed.count(n) > 1}) == []


def _settings_with(env_file: Path) -> dict[str, str]:
    """realtime_saas.settings' values, in a clean process environment (DEBUG=true) with this .env."""
    code = ("import json, realtime_saas.settings as s; "
            "print(json.dumps({k: repr(getattr(s, k)) for k in dir(s) if k.isupper() and k != 'ENV_FILE'}))")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0", "DEBUG": "true", "ENV_FILE": str(env_file)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_copy_of_env_example_configures_the_defaults(tmp_path):
    defaults = _settings_with(tmp_path / "no-such-file")
    copied = _settings_with(ENV_EXAMPLE)
    assert {k: (defaults[k], copied.get(k)) for k in defaults if defaults[k] != copied.get(k)} == {}


# --- the collector -----------------------------------------------------------------------------


def test_the_collector_finds_every_kind_of_read():
    source = '''
import os
import environ
from pathlib import Path

env = environ.Env()
env.read_env(str(Path("x") / ".env"))

def env_bool(name, default):
    return env.str(name, default=str(default)) == "true"

def _supervisor_setting(name: str, default: float) -> float:
    return env.float(f"SUPERVISOR_{name}", default=default)

def _limit(name, default):
    return _supervisor_setting(name + "_LIMIT", default)

A = env("PLAIN")
B = env.str("STR", default="")
C = env.db_url("DATABASE_URL", default="sqlite://")
D = env_bool("FLAG", False)
E = _supervisor_setting("LEASE_SECONDS", 15.0)
F = _limit(name="CALLS", default=3)
G = os.environ.get("FROM_OS")
H = os.environ["FROM_OS_ITEM"]
I = os.getenv("FROM_GETENV", "")
for name in ("LOOP_ONE", "LOOP_TWO"):
    globals()[name] = env.int(name, default=0)
for name, default in [("PAIR_ONE", 1), ("PAIR_TWO", 2)]:
    globals()[name] = env.int(name, default=default)
RATES = {scope: env.str(f"THROTTLE_{scope}", default="20/min") for scope in ("CALL_START", "KEY_MINT")}
RATES2 = {key: _supervisor_setting(key, 1.0) for key in ("X", "Y")}
_DEFAULTS = {"FROM_DICT": 1}
_PREFIX = "PRE_"
for name, default in _DEFAULTS.items():
    env.int(name, default=default)
for name in {"FROM_KEYS": 1}:
    env.int(_PREFIX + name)
'''
    assert SettingsReads(source).names() == {
        "PLAIN", "STR", "DATABASE_URL", "FLAG", "SUPERVISOR_LEASE_SECONDS", "SUPERVISOR_CALLS_LIMIT",
        "FROM_OS", "FROM_OS_ITEM", "FROM_GETENV", "LOOP_ONE", "LOOP_TWO", "PAIR_ONE", "PAIR_TWO",
        "SUPERVISOR_X", "SUPERVISOR_Y", "THROTTLE_CALL_START", "THROTTLE_KEY_MINT", "FROM_DICT", "PRE_FROM_KEYS",
    }


def test_the_collector_refuses_to_guess():
    import pytest

    for source in ('import environ\nenv = environ.Env()\nNAME = "X"\nNAME = "Y"\nX = env.str(NAME)\n',
                   'import environ\nenv = environ.Env()\nX = {s: env.str(s.upper()) for s in ("a",)}\n',
                   'import environ\nenv = environ.Env()\ndef f(name):\n    return env.int(name)\nX = f(NAME)\n',
                   'import environ\nenv = environ.Env()\nfor n in NAMES:\n    env.int(n)\n'):
        with pytest.raises(UnknownName):
            SettingsReads(source).names()
