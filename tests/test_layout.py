"""The package's layout: no import cycles between its files, and the boundaries between its parts.

Imports are read with ``ast`` from the source (every ``import`` and ``from ... import``, at module level,
inside functions and under ``TYPE_CHECKING`` alike), so a cycle hidden behind a lazy import is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "voxrelay"
GENERATED = ("_pb2.py", "_pb2_grpc.py")


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if not p.name.endswith(GENERATED)}


def imported(path: Path, modules: dict[str, Path], root: Path = PACKAGE) -> set[str]:
    """The package's modules that ``path`` imports (a name imported from a package counts as its submodule)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            # "voxrelay.edge.link.spool.Spool" -> its module; a package's __init__ counts only when named itself.
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imported(path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_import_reader_sees_lazy_and_type_checking_imports(tmp_path: Path) -> None:
    modules = all_modules()
    source = tmp_path / "voxrelay" / "edge" / "probe.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from voxrelay.edge.link.uplink import Uplink\n"
        "def f():\n    from voxrelay.cloud import server\n    from .link import spool\n"
    )
    found = imported(source, modules, root=tmp_path / "voxrelay")
    assert {"voxrelay.edge.link.uplink", "voxrelay.cloud.server", "voxrelay.edge.link.spool"} <= found


def test_no_import_cycle_between_files_of_the_package() -> None:
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("part", "forbidden"),
    [
        ("voxrelay.edge", "voxrelay.cloud"),
        ("voxrelay.cloud", "voxrelay.edge"),
        ("voxrelay.batch", "voxrelay.cloud"),
    ],
)
def test_parts_do_not_import_each_other(part: str, forbidden: str) -> None:
    graph = import_graph()
    offenders = {
        f"{name} imports {target}"
        for name, targets in graph.items()
        if name == part or name.startswith(part + ".")
        for target in targets
        if target == forbidden or target.startswith(forbidden + ".")
    }
    assert not offenders, sorted(offenders)


def test_no_package_imports_the_command_line() -> None:
    graph = import_graph()
    offenders = {
        f"{name} imports {target}"
        for name, targets in graph.items()
        if not name.startswith("voxrelay.cli") and name != "voxrelay.__main__"
        for target in targets
        if target.startswith("voxrelay.cli")
    }
    assert not offenders, sorted(offenders)


def test_the_edge_shows_its_stages_as_folders() -> None:
    edge = PACKAGE / "edge"
    stages = {p.name for p in edge.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert {"capture", "vad", "link"} <= stages
    for stage in stages:
        doc = ast.get_docstring(ast.parse((edge / stage / "__init__.py").read_text()))
        assert doc and len(doc) > 80, f"edge/{stage}/__init__.py needs a docstring saying what it is"
    # Nothing of a stage is left loose beside the stages.
    loose = {p.stem for p in edge.glob("*.py")} - {"__init__"}
    assert loose <= {
        "agent",
        "drift",
        "events",
        "interrupt",
        "metrics",
        "observe",
        "results",
        "resume",
        "sinks",
        "transcribe",
    }, loose
