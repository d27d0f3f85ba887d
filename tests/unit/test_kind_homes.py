"""Guard: what differs by kind lives in the kind's home (``reconciler/kinds/``).

Outside ``reconciler/kinds/`` and ``reconciler/model.py`` (where ``Kind`` is defined), no
module of the tool names a kind (``Kind.IDENTITY`` and the like): the planner, the reader, the
executor, progress and the renderers ask the registries instead. ``bench/`` is held to it too.

In scope: the tool's package and the benchmark. Out of scope: ``tests/``, whose fixtures name
the kinds they build, and ``reconciler/sim/``, which may not import the tool at all (an import
contract in pyproject.toml forbids it, so it cannot name a ``Kind`` either).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOMES = (ROOT / "reconciler" / "kinds", ROOT / "reconciler" / "model.py")


def _kind_references(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every ``Kind.X`` attribute and every import of ``Kind`` under another
    name (an alias would hide the references)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "Kind" and node.attr.isupper():
                found.append((node.lineno, f"Kind.{node.attr}"))
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name == "Kind" and alias.asname not in (None, "Kind"):
                    found.append((node.lineno, f"Kind imported as {alias.asname}"))
    return sorted(found)


def _scanned() -> list[Path]:
    files = sorted((ROOT / "reconciler").rglob("*.py")) + sorted((ROOT / "bench").rglob("*.py"))
    sim = ROOT / "reconciler" / "sim"
    return [
        f
        for f in files
        if not any(f == home or home in f.parents for home in HOMES) and sim not in f.parents
    ]


def test_no_module_outside_the_kinds_names_a_kind() -> None:
    found = [
        f"{path.relative_to(ROOT).as_posix()}:{line}: {text}"
        for path in _scanned()
        for line, text in _kind_references(path)
    ]
    assert not found, "ask the kind's rules or executor instead:\n" + "\n".join(found)


def test_the_guard_sees_a_reference(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from reconciler.model import Kind\n"
        "from reconciler.model import Kind as K\n"
        "x = Kind.IDENTITY\n"
        "y = TargetKind.CLOUD\n",
        encoding="utf-8",
    )
    assert _kind_references(sample) == [(2, "Kind imported as K"), (3, "Kind.IDENTITY")]


def test_the_simulator_imports_nothing_of_the_tool() -> None:
    """Also held by an import contract (pyproject.toml); this reads the files themselves."""
    found = []
    for path in sorted((ROOT / "reconciler" / "sim").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                if module.split(".")[0] == "reconciler" and module.split(".")[:2] != [
                    "reconciler",
                    "sim",
                ]:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module}")
    assert not found, "\n".join(found)
