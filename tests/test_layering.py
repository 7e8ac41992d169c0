"""The import graph of mcuzoo: no stage imports a later stage (module level and inside functions).

The stage order lives here, once (:data:`STAGES`); README's layering follows it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import mcuzoo

PACKAGE = Path(mcuzoo.__file__).parent

#: Modules any module may import (they import only each other).
BOTTOM = ("errors", "console", "rundir", "config", "layouts", "runtime", "plots")
#: The stages in the order data flows through them; each may import only earlier ones (and BOTTOM).
STAGES = ("config", "data", "models", "train", "quantization", "evaluate", "analysis", "export", "card", "zoo")
#: On top: they may import anything, and nothing imports them.
TOP = ("pipeline", "cli", "predict", "__init__", "__main__")


def _unit(module: str) -> str:
    """The first component below ``mcuzoo`` of a dotted module name: its stage, or a bottom/top module."""
    return module.split(".")[1] if "." in module else module


def _module_of(path: Path, root: Path) -> list[str]:
    return list(path.relative_to(root.parent).with_suffix("").parts)


def _imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import of a package module in ``path``, wherever it sits."""
    parts = _module_of(path, root)
    package = parts[:-1]  # a module's package; for __init__ the package itself
    top = root.name
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == top]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != top:
                continue
            if mod == top or node.module is None:  # `from . import x`: x is the module imported
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, mod))
    return out


def _rank(unit: str) -> int | None:
    return STAGES.index(unit) if unit in STAGES and unit not in BOTTOM else None


def backward_imports(root: Path = PACKAGE) -> list[tuple[str, str, str, int]]:
    """(importer unit, imported unit, file, line) of every import against the flow."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        me = _unit(".".join(_module_of(path, root)))
        rel = "/".join(_module_of(path, root)) + ".py"
        for line, mod in _imports(path, root):
            them = _unit(mod)
            if me in TOP or them == me:
                continue
            wrong = (them in TOP or (me in BOTTOM and them not in BOTTOM)
                     or (_rank(me) is not None and _rank(them) is not None and _rank(them) > _rank(me)))
            if wrong:
                bad.append((me, them, rel, line))
    return bad


def test_every_module_has_a_place_in_the_layering():
    units = {_unit(".".join(_module_of(p, PACKAGE))) for p in PACKAGE.rglob("*.py")}
    assert sorted(u for u in units if u not in BOTTOM + STAGES + TOP) == []


def test_no_stage_imports_a_later_stage():
    found = backward_imports()
    bad = [f"{f}:{line} ({me} imports {them})" for me, them, f, line in found]
    assert bad == [], "imports against the flow " + " -> ".join(STAGES) + ":\n" + "\n".join(bad)


def test_the_check_finds_backward_imports_inside_functions_and_relative_ones(tmp_path):
    pkg = tmp_path / "mcuzoo"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("from .. import errors\n")
    (pkg / "data" / "x.py").write_text("def f():\n    from ..card import write_card\n")
    (pkg / "models.py").write_text("import mcuzoo.data\nfrom mcuzoo import zoo\n")
    (pkg / "rundir.py").write_text("from .models import build_model\n")
    (pkg / "zoo.py").write_text("from .pipeline import run\n")
    got = sorted((me, them, f) for me, them, f, _ in backward_imports(pkg))
    assert got == [("data", "card", "mcuzoo/data/x.py"), ("models", "zoo", "mcuzoo/models.py"),
                   ("rundir", "models", "mcuzoo/rundir.py"), ("zoo", "pipeline", "mcuzoo/zoo.py")]
