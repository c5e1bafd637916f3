"""The layering of docs/architecture.md holds: every import between two vireid packages points down, and
no module is over about 500 lines.

The floors are read from the "Layers" block of docs/architecture.md, so the picture and the check cannot
drift apart. Imports inside functions count too (they are dependencies all the same)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "vireid"
#: "about 500 lines": the limit the layering issue set, with the slack its "about" allows.
MAX_MODULE_LINES = 520


def floors() -> list[set[str]]:
    """The floors of docs/architecture.md's "Layers" block, top first: one line per floor, its packages
    separated by spaces (``floor N: a b c``)."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = text[text.index("## Layers"):]
    block = block[block.index("```") + 3:]
    block = block[:block.index("```")]
    rows = [re.match(r"\s*floor \d+:\s*(.+?)\s*(?:#.*)?$", line) for line in block.splitlines()]
    return [set(m.group(1).split()) for m in rows if m]


def package_of(path: Path) -> str:
    """The vireid package a module belongs to: its first folder, or its own name for top-level modules."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def vireid_imports(path: Path, root: Path = REPO) -> list[tuple[int, str]]:
    """``(line, imported vireid package)`` for every absolute or relative import of ``path`` (a module
    under ``root/vireid``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    own = path.relative_to(root).with_suffix("").parts
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's own package path
                base = own[: len(own) - node.level]
                names = [".".join(base + ((node.module,) if node.module else ()))]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "vireid" and len(parts) > 1:
                out.append((node.lineno, parts[1]))
    return out


def test_the_layers_block_names_every_package_once() -> None:
    seen = [p for floor in floors() for p in floor]
    assert len(seen) == len(set(seen)), seen
    packages = {package_of(p) for p in PACKAGE.rglob("*.py")} - {"__init__"}
    assert packages == set(seen), f"in vireid/ but not drawn: {packages - set(seen)}; drawn but absent: {set(seen) - packages}"


def test_imports_between_packages_point_down() -> None:
    level = {p: i for i, floor in enumerate(floors()) for p in floor}
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue  # the root package re-exports the public API: it sits above every floor
        pkg = package_of(path)
        for line, target in vireid_imports(path):
            if target != pkg and level[target] <= level[pkg]:
                wrong.append(f"{path.relative_to(REPO)}:{line}: {pkg} (floor {level[pkg]}) imports {target} "
                             f"(floor {level[target]})")
    assert not wrong, "imports against docs/architecture.md's layers:\n" + "\n".join(wrong)


def test_the_check_sees_a_wrong_way_import(tmp_path: Path) -> None:
    """The import reader finds absolute, relative and function-level imports (so the test above can fail)."""
    module = tmp_path / "vireid" / "data" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from vireid.engine import trainer\n    from ..models import base\n")
    assert vireid_imports(module, root=tmp_path) == [(2, "engine"), (3, "models")]


def test_no_module_is_over_about_500_lines() -> None:
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them along their ideas): {long}"


def module_name(path: Path, root: Path = REPO) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, root: Path = REPO) -> set[str]:
    """Every dotted name an import of ``path`` may bind: modules and ``module.name`` for from-imports
    (relative imports resolved; imports inside functions and ``TYPE_CHECKING`` blocks included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = module_name(path, root).split(".")
    base_parts = own if path.name == "__init__.py" else own[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = base_parts[: len(base_parts) - (node.level - 1)] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else [])) if node.level else (node.module or "")
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def import_cycles(package: Path, root: Path = REPO) -> list[list[str]]:
    """Cycles of file-level imports among the modules of one folder (its ``__init__`` aside: a package
    re-exporting its modules imports them one way)."""
    modules = {module_name(p, root): p for p in package.rglob("*.py")}
    graph = {name: {m for m in imported_names(path, root) if m in modules and m != name} for name, path in modules.items()}
    cycles = []
    for start, path in modules.items():
        if path.name == "__init__.py":
            continue
        folder = path.parent
        # depth-first search for a way back to `start` through modules of the same folder
        stack = [(start, [start])]
        seen = {start}
        while stack:
            node, trail = stack.pop()
            for nxt in sorted(graph[node]):
                p = modules[nxt]
                if p.parent != folder or p.name == "__init__.py":
                    continue
                if nxt == start:
                    cycles.append(trail + [start])
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, trail + [nxt]))
    return cycles


def test_no_file_imports_its_importer() -> None:
    cycles = import_cycles(PACKAGE)
    assert not cycles, "import rings inside a package (move the shared piece to a module both import):\n" + \
        "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_sees_a_ring(tmp_path: Path) -> None:
    """Two modules of a folder that import each other (one only for type checking) are a ring."""
    pkg = tmp_path / "vireid" / "engine"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from vireid.engine import a\n")
    (pkg / "a.py").write_text("from vireid.engine.b import thing\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import other\n")
    (pkg / "c.py").write_text("def f():\n    from vireid.engine import a\n")
    cycles = import_cycles(tmp_path / "vireid", root=tmp_path)
    assert sorted(c[0] for c in cycles) == ["vireid.engine.a", "vireid.engine.b"]
