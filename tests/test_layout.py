"""The house keeps its shape: the rooms and rules of docs/architecture.md ("The house") hold for
every import in the code, read with `ast` (nothing is imported or run).

When one of these fails, the message names the file, the line and the rule. Fix the import, or,
if the design really changed, change the table in docs/architecture.md and say why there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.imports import (
    PACKAGES,
    Import,
    Module,
    circles,
    imports_of,
    read_modules,
)
from tests.support.paths import PROJECT_ROOT

ARCHITECTURE = PROJECT_ROOT / "docs" / "architecture.md"
MAX_MODULES_PER_FOLDER = 15
_ROW = re.compile(r"^\| `([^`]+)` \|.*\| ([^|]+) \|$")


@dataclass(frozen=True)
class Room:
    path: str  # "device/journal/" (a folder) or "device/app.py" (a file)
    may_import: tuple[str, ...]

    def holds(self, file: str) -> bool:
        return file == self.path if self.path.endswith(".py") else file.startswith(self.path)


def read_rooms(text: str) -> list[Room]:
    """The rooms of the table under "## The house", in their order."""
    section = text.split("## The house", 1)[1].split("\n## ", 1)[0]
    rooms = []
    for line in section.splitlines():
        found = _ROW.match(line.strip())
        if found:
            allowed = tuple(re.findall(r"`([^`]+)`", found.group(2)))
            rooms.append(Room(found.group(1), allowed))
    return rooms


@pytest.fixture(scope="module")
def modules() -> dict[str, Module]:
    return read_modules()


@pytest.fixture(scope="module")
def rooms() -> list[Room]:
    return read_rooms(ARCHITECTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def all_imports(modules: dict[str, Module]) -> list[Import]:
    return [found for module in modules.values() for found in imports_of(module, modules)]


def file_of(module: Module) -> str:
    return module.path.relative_to(PROJECT_ROOT).as_posix()


def room_of(file: str, rooms: list[Room]) -> Room | None:
    holding = [room for room in rooms if room.holds(file)]
    return max(holding, key=lambda room: len(room.path), default=None)


def test_every_module_of_the_project_is_in_a_room_of_the_table(
    modules: dict[str, Module], rooms: list[Room]
) -> None:
    homeless = [
        file_of(module)
        for module in modules.values()
        if not module.is_package and room_of(file_of(module), rooms) is None
    ]
    assert len(rooms) > 20
    assert homeless == []


def test_every_import_goes_to_a_room_the_table_allows(
    modules: dict[str, Module], rooms: list[Room], all_imports: list[Import]
) -> None:
    refused = []
    for found in all_imports:
        if found.module not in modules:
            continue  # a module that does not exist: the next test says so
        source = file_of(modules[found.source])
        target = file_of(modules[found.module])
        here, there = room_of(source, rooms), room_of(target, rooms)
        assert here is not None and there is not None
        if here == there or any(target.startswith(allowed) for allowed in here.may_import):
            continue
        refused.append(f"{source}:{found.line} imports {found.module} ({there.path})")
    assert refused == [], "imports the table in docs/architecture.md does not allow"


def test_every_import_names_a_module_that_exists(
    modules: dict[str, Module], all_imports: list[Import]
) -> None:
    missing = [f"{f.source}:{f.line} {f.module}" for f in all_imports if f.module not in modules]
    assert missing == []


def test_the_rooms_allowed_imports_have_no_circle(rooms: list[Room]) -> None:
    edges = {
        room.path: {
            other.path
            for allowed in room.may_import
            for other in rooms
            if other != room and other.path.startswith(allowed)
        }
        for room in rooms
    }
    assert circles(edges) == []


def test_no_modules_import_each_other_in_a_circle(
    modules: dict[str, Module], all_imports: list[Import]
) -> None:
    edges: dict[str, set[str]] = {}
    for found in all_imports:
        if found.module in modules and found.module != found.source:
            edges.setdefault(found.source, set()).add(found.module)
    assert circles(edges) == []


def test_a_name_is_imported_from_the_module_that_defines_it(
    modules: dict[str, Module], all_imports: list[Import]
) -> None:
    elsewhere = [
        f"{found.source}:{found.line} takes {found.name} from {found.module}"
        for found in all_imports
        if found.name is not None
        and found.module in modules
        and found.name not in modules[found.module].defined_names()
    ]
    assert elsewhere == [], "import each name from its home module, not through another"


def test_a_modules_all_lists_only_what_it_defines(modules: dict[str, Module]) -> None:
    borrowed = [
        f"{file_of(module)}: {name}"
        for module in modules.values()
        for name in module.all_names()
        if name not in module.defined_names()
    ]
    assert borrowed == [], "__all__ re-exports these: callers import them from their home"


def test_a_package_init_holds_only_its_docstring(modules: dict[str, Module]) -> None:
    busy = []
    for module in modules.values():
        if not module.is_package or module.name.split(".")[0] not in PACKAGES:
            continue
        body = module.tree.body
        statements = body[1:] if body and _is_docstring(body[0]) else body
        if not body or not _is_docstring(body[0]) or statements:
            busy.append(file_of(module))
    assert busy == [], "a package's __init__.py is its docstring: the room's caption"


def test_no_folder_holds_more_than_fifteen_modules() -> None:
    crowded = {}
    for package in PACKAGES:
        for folder in [PROJECT_ROOT / package, *(PROJECT_ROOT / package).rglob("*/")]:
            count = len(list(folder.glob("*.py")))
            if count > MAX_MODULES_PER_FOLDER:
                crowded[folder.relative_to(PROJECT_ROOT).as_posix()] = count
    assert crowded == {}, "a folder of more than 15 modules is a family not yet named"


def test_the_table_reads_each_row_and_its_allowed_rooms() -> None:
    text = """## The house
| room | what it holds | may import |
|---|---|---|
| `a/` | Things (`x.py`). | nothing of ours |
| `b/c.py` | More. | `a/`, `d/` |
## Next
| `e/` | not in the section | `a/` |
"""
    assert read_rooms(text) == [Room("a/", ()), Room("b/c.py", ("a/", "d/"))]


def test_the_reader_sees_each_kind_of_import_a_rule_is_about(tmp_path: Path) -> None:
    files = {
        "device/__init__.py": '"""The caption."""',
        "device/home.py": "X = 1\nclass Y: ...\n",
        "device/through.py": "from device.home import X\n__all__ = ['X']\n",
        "device/alias.py": "from device import home\nY = home.Y\nZ = home.Y()\nW = home.Y\n",
        "device/relative.py": "from .home import X\n",
        "device/late.py": "def f():\n    from device.through import X\n    import device.alias\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = read_modules(("device",), base=tmp_path)

    assert modules["device.home"].defined_names() == {"X", "Y"}
    assert modules["device.through"].defined_names() == {"__all__"}
    assert modules["device.through"].all_names() == ["X"]
    # Y passes home.Y on under its own name (a re-export); W names it anew; Z is made here.
    assert modules["device.alias"].defined_names() == {"W", "Z"}
    [relative] = imports_of(modules["device.relative"], modules)
    assert (relative.module, relative.line) == (".home", 1)  # no such module: refused
    late = imports_of(modules["device.late"], modules)
    assert [(f.module, f.name, f.line) for f in late] == [
        ("device.through", "X", 2),
        ("device.alias", None, 3),
    ]
    [package_import] = imports_of(modules["device.alias"], modules)
    assert (package_import.module, package_import.name) == ("device.home", None)


def test_a_room_is_found_by_its_longest_path() -> None:
    rooms = [Room("device/", ()), Room("device/journal/", ()), Room("device/app.py", ())]
    assert room_of("device/journal/outbox.py", rooms) == rooms[1]
    assert room_of("device/app.py", rooms) == rooms[2]
    assert room_of("device/scanner.py", rooms) == rooms[0]
    assert room_of("server/app.py", rooms) is None


def test_a_circle_of_three_is_found_and_a_line_is_not() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": {"c"}}) == []


def _is_docstring(node: object) -> bool:
    return (
        hasattr(node, "value")
        and type(node).__name__ == "Expr"
        and isinstance(getattr(node.value, "value", None), str)
    )


def test_room_paths_in_the_table_exist(rooms: list[Room]) -> None:
    missing = [room.path for room in rooms if not Path(PROJECT_ROOT / room.path).exists()]
    assert missing == []
