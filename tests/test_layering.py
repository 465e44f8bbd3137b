"""The package's layering: no module imports one of a higher layer (the layers are those that the
``monai_seg/__init__.py`` docstring lists, read here from the source)."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "monai_seg"


def layers(root: Path) -> dict[str, int]:
    """Top-level module or subpackage name -> its layer (0 lowest), from the indented ``a -> b, c -> ...``
    lines of the package docstring."""
    docstring = ast.get_docstring(ast.parse((root / "__init__.py").read_text()), clean=False) or ""
    chain = " ".join(line.strip() for line in docstring.splitlines() if line.startswith("    ") and "->" in line)
    return {name.strip(): rank for rank, layer in enumerate(chain.split("->")) for name in layer.split(",")}


def module_name(path: Path, root: Path) -> str:
    """``<root>/handlers/figures.py`` -> ``monai_seg.handlers.figures`` (a package: its ``__init__``'s name)."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """``(line, dotted name)`` of every module or module member that the file imports, anywhere in it
    (functions included); relative imports are resolved against the file's package."""
    name = module_name(path, root)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            yield from ((node.lineno, f"{base}.{alias.name}") for alias in node.names)


def layer_violations(root: Path) -> list[str]:
    """``"<file>:<line> (<module>, layer i) imports <name> (<module>, layer j)"`` for each import of a
    higher layer (j > i) by a module of the package at ``root``; its ``__init__.py``, which imports
    every subpackage for the bundle configs, is left out."""
    rank = layers(root)

    def top_level(dotted: str) -> str | None:
        parts = dotted.split(".")
        return parts[1] if parts[0] == root.name and len(parts) > 1 else None

    violations = []
    for path in sorted(root.rglob("*.py")):
        if path == root / "__init__.py":
            continue
        importer = top_level(module_name(path, root))
        for line, imported in imported_names(path, root):
            target = top_level(imported)
            if target in rank and rank[target] > rank[importer]:
                violations.append(
                    f"{path.relative_to(root.parent)}:{line} ({importer}, layer {rank[importer]}) imports "
                    f"{imported} ({target}, layer {rank[target]})"
                )
    return violations


def test_the_docstring_places_every_module_in_a_layer():
    """A new module or subpackage must be given its layer, and every layer name must exist."""
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    modules |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert sorted(set(layers(PACKAGE)) ^ modules) == []


def test_no_module_imports_a_higher_layer():
    assert layer_violations(PACKAGE) == []


def test_an_import_from_a_higher_layer_is_named(tmp_path):
    """Absolute, relative and function-level imports of a higher layer are found; lower and same-layer
    ones pass."""
    root = tmp_path / "monai_seg"
    files = {
        "__init__.py": '"""Layers:\n\n    utils -> metrics, losses\n    -> handlers\n"""\n',
        "utils.py": "",
        "losses.py": "",
        "handlers/__init__.py": "",
        "metrics/__init__.py": "from .example import f\n",
        "metrics/example.py": """\
            import monai_seg.utils
            from .. import losses
            from ..handlers import Report
            from . import other

            def f():
                from monai_seg.handlers.figures import Curves
            """,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    assert layer_violations(root) == [
        "monai_seg/metrics/example.py:3 (metrics, layer 1) imports monai_seg.handlers.Report (handlers, layer 2)",
        "monai_seg/metrics/example.py:7 (metrics, layer 1) imports monai_seg.handlers.figures.Curves "
        "(handlers, layer 2)",
    ]
