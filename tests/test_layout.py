"""The layout stays readable: imports point down the layers, no cycles, no look-alike names.

Every ``import`` of a natal module is counted, also those inside functions (imported late to
keep ``natal --help`` fast, they are dependencies all the same). docs/architecture.md draws
the same layers.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("cluster", "pipelines", "actors", "serving")
# Lowest first; a module may import its own layer or any below. The most specific prefix wins.
LAYERS = [
    ["cluster.config"],
    ["cluster.runtime", "cluster.resources", "cluster.console"],
    ["pipelines.data", "pipelines.demo"],
    ["pipelines.training"],
    ["pipelines.pretrain"],
    ["pipelines.posttrain"],
    ["actors"],
    ["pipelines.rl"],
    ["serving"],
    ["cluster"],
    ["benchmarks"],
]


def module_files() -> dict[str, Path]:
    found = {}
    for top in (*PRODUCT, "benchmarks"):
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = module_files()


def resolve(name: str) -> str | None:
    """The natal module a dotted name lives in (a function's name resolves to its module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(path: Path) -> set[str]:
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {resolve(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                targets.add(full if full in MODULES else resolve(node.module))
    return targets - {None}


def import_graph() -> dict[str, set[str]]:
    return {name: imports_of(path) - {name} for name, path in MODULES.items()}


def layer(module: str) -> int:
    best, rank = "", -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, index
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS"
    return rank


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@cache
def top_level_names(path: Path) -> set[str]:
    """What ``from module import name`` can find in a module: its definitions and imports."""
    names: set[str] = set()
    todo = list(ast.parse(path.read_text()).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.ImportFrom) and node.names[0].name == "*":
            names |= top_level_names(MODULES[node.module]) if node.module in MODULES else set()
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.If | ast.Try | ast.With):
            todo += [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
            todo += [n for handler in getattr(node, "handlers", []) for n in handler.body]
    return names


def missing_names(path: Path) -> list[str]:
    """``from natal.module import name`` where the module defines no such name."""
    missing = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in MODULES:
            defined = top_level_names(MODULES[node.module])
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if (
                    alias.name != "*"
                    and full not in MODULES
                    and alias.name not in defined
                    and "__getattr__" not in defined
                ):
                    missing.append(f"{path.relative_to(ROOT)}: {full}")
    return missing


def look_alike_key(name: str) -> str:
    """tokenize/tokenizer, reward/rewards, stage/stages read alike: one key for all of them."""
    key = name.replace("_", "").lower()
    for suffix in ("s", "r", "e"):
        key = key.removesuffix(suffix)
    return key


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_every_import_points_down_the_layers():
    upward = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in import_graph().items()
        for target in targets
        if layer(target) > layer(module)
    ]
    assert upward == []


def test_every_imported_name_exists():
    """A rename reaches every caller, benchmarks included (no test imports those)."""
    assert [name for path in MODULES.values() for name in missing_names(path)] == []


def test_no_two_modules_a_reader_could_mistake_for_each_other():
    """Module and package names of the product are distinct even after singular/plural, -er."""
    by_key = defaultdict(set)
    for name in MODULES:
        if name.split(".")[0] in PRODUCT and "." in name:
            by_key[look_alike_key(name.rpartition(".")[2])].add(name)
    assert {key: sorted(names) for key, names in by_key.items() if len(names) > 1} == {}


def test_the_checks_catch_what_they_guard_against():
    """A cycle, an upward import and a look-alike pair are each found."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert layer("pipelines.rl.rlhf") > layer("actors.learner") > layer("pipelines.data.crawl")
    assert look_alike_key("tokenize") == look_alike_key("tokenizer")
    assert look_alike_key("reward") == look_alike_key("rewards")
    assert look_alike_key("reward") != look_alike_key("reward_model")
    assert "run" in top_level_names(MODULES["pipelines.pretrain.llama"])
    assert "nothing_by_this_name" not in top_level_names(MODULES["pipelines.pretrain.llama"])


@pytest.mark.parametrize("package", sorted(p for p in MODULES if MODULES[p].name == "__init__.py"))
def test_each_package_says_what_belongs_in_it(package):
    """Its ``__init__`` is a docstring (what lives here), not a second home for code."""
    tree = ast.parse(MODULES[package].read_text())
    assert ast.get_docstring(tree), f"{package}/__init__.py has no docstring"
    if package not in ("cluster.config", "cluster.commands"):  # sections re-exported; verbs listed
        assert all(isinstance(n, ast.Expr) for n in tree.body), f"{package}: code in __init__"
