"""The project's imports as data, read from the source with `ast` (nothing is imported): for the
layout test, which holds them against the rooms and rules of docs/architecture.md."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import PROJECT_ROOT

PACKAGES = ("protocol", "firmware_config", "device", "server", "gatescan")
OURS = (*PACKAGES, "bench", "tests")


@dataclass(frozen=True)
class Import:
    """One name taken from one of our modules: `from module import name` (name None for
    `import module`), at `line` of `source`."""

    source: str  # the importing module, dotted
    module: str  # the imported module, dotted
    name: str | None
    line: int


@dataclass(frozen=True)
class Module:
    name: str  # dotted: "device.journal.outbox"; a package is its __init__
    path: Path
    tree: ast.Module

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"

    def defined_names(self) -> set[str]:
        """Names the module itself defines at its top level: not those it imports, nor those it
        only passes on from one of our modules under the same name (`Store = database.Store` is
        a re-export; `User = Account` gives a type a name of its own)."""
        return _defined(self.tree.body, _names_taken_from_ours(self.tree))

    def all_names(self) -> list[str]:
        """The names its `__all__` lists (empty without one)."""
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and "__all__" in _target_names(node.targets):
                elements = node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else []
                return [e.value for e in elements if isinstance(e, ast.Constant)]
        return []


def _defined(body: list[ast.stmt], borrowed: set[str]) -> set[str]:
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(
                n for n in _target_names(node.targets) if not _passed_on(n, node, borrowed)
            )
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            names.update(
                n for n in _target_names([node.target]) if not _passed_on(n, node, borrowed)
            )
        elif isinstance(node, ast.If | ast.Try):  # a name defined either way
            names |= _defined(node.body, borrowed)
    return names


def _passed_on(
    name: str, node: ast.Assign | ast.AnnAssign | ast.AugAssign, borrowed: set[str]
) -> bool:
    """`name = imported` or `name = module.name`, where the value comes from one of our modules
    and keeps its name: a re-export, not a definition."""
    value = node.value
    if value is None or not isinstance(value, ast.Name | ast.Attribute):
        return False
    last = value.attr if isinstance(value, ast.Attribute) else value.id
    while isinstance(value, ast.Attribute):
        value = value.value
    return isinstance(value, ast.Name) and value.id in borrowed and last == name


def _names_taken_from_ours(tree: ast.Module) -> set[str]:
    """The local names bound by importing one of our modules or a name from one."""
    taken = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or _ours(node.module)):
            taken |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name):
                    taken.add(alias.asname or alias.name.split(".")[0])
    return taken


def _ours(module: str | None) -> bool:
    return module is not None and module.split(".")[0] in OURS


def _target_names(targets: Iterable[ast.expr]) -> Iterator[str]:
    for target in targets:
        if isinstance(target, ast.Name):
            yield target.id
        elif isinstance(target, ast.Tuple):
            yield from _target_names(target.elts)


def read_modules(roots: Iterable[str] = OURS, base: Path = PROJECT_ROOT) -> dict[str, Module]:
    """Every Python module under these top-level folders of `base`, by dotted name."""
    modules = {}
    for root in roots:
        for path in sorted((base / root).rglob("*.py")):
            relative = path.relative_to(base).with_suffix("")
            parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            modules[".".join(parts)] = Module(".".join(parts), path, tree)
    return modules


def imports_of(module: Module, modules: dict[str, Module]) -> list[Import]:
    """Every import of one of our modules anywhere in `module` (inside functions and
    TYPE_CHECKING blocks too: each is a dependency all the same). `from package import module`
    counts as an import of that module. A relative import is listed under its dots ("..uplink"):
    no module has that name, so the layout test refuses it."""
    found = []
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            dots = "." * node.level + (node.module or "")
            found.append(Import(module.name, dots, None, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in OURS:
                    found.append(Import(module.name, alias.name, None, node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] not in OURS:
                continue
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in modules:
                    found.append(Import(module.name, submodule, None, node.lineno))
                else:
                    found.append(Import(module.name, node.module, alias.name, node.lineno))
    return found


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in edges.get(node, ()):
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found
