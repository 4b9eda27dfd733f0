"""The package's imports follow its layers: no circle, no import from a lower layer to a higher one.

Every ``import`` and ``from ... import`` of medscore modules counts, at module level and inside functions alike
(walked with ``ast``). ``LAYERS`` is the layering of ``docs/design.md``, lowest first: a module may import its own
layer and the layers below. ``FORBIDDEN`` adds the edges that the order alone allows but the design does not: the
four core packages stay apart, and the tasks and the solvers never touch files (the file driver opens them).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "medscore"

LAYERS: list[tuple[str, ...]] = [
    ("medscore", "errors"),  # the package root (its version) and the exceptions
    ("checks", "rng", "devices"),  # argument checks, random streams, devices: import errors only
    ("config", "metrics"),
    ("physics", "sampling", "nets", "transforms"),  # the core
    ("io",),  # files in and out, pictures, the embedded data
    ("baselines",),  # classical methods
    ("priors",),  # model folders, bundled priors, level splits
    ("solvers",),  # the tensor driver: presets, levels, chains
    ("tasks",),  # one inverse problem each: arrays in, arrays out, never files
    ("training",),
    ("pipeline",),  # the one file driver
    ("evaluation",),  # benchmark, tuning, curves
    ("monai",),  # Inferer and bundle
    ("api",),
    ("cli",),
]
FORBIDDEN = {
    "physics": {"sampling", "nets", "transforms"},
    "sampling": {"physics", "nets", "transforms"},
    "nets": {"physics", "sampling", "transforms"},
    "transforms": {"sampling", "nets"},
    "solvers": {"io", "priors"},
    "tasks": {"io", "priors"},
}
BASE = {"checks", "rng", "devices"}  # import nothing of medscore but errors


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(module: str, path: Path, is_pkg: bool) -> set[str]:
    """medscore modules that ``module`` imports anywhere in its file."""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "medscore"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                head = base[: len(base) - node.level + 1]
                source = ".".join(head + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "medscore":
                continue
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                found.add(sub if sub in MODULES else source)
    return {t for t in (_resolve(n) for n in found) if t and t != module}


GRAPH = {m: _targets(m, p, pkg) for m, (p, pkg) in MODULES.items()}


def group(module: str) -> str:
    """``medscore.tasks.mri`` -> ``tasks``; the package root -> ``medscore``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "medscore"


def layer(module: str) -> int:
    g = group(module)
    for i, members in enumerate(LAYERS):
        if g in members:
            return i
    raise AssertionError(f"{module}: its group {g!r} is in no layer; add it to LAYERS and docs/design.md")


def test_every_module_has_a_layer():
    for module in MODULES:
        layer(module)


def test_no_import_goes_up_a_layer():
    bad = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() for t in ts if layer(t) > layer(m))
    assert not bad, "imports from a lower layer to a higher one:\n" + "\n".join(bad)


def test_no_forbidden_edge():
    bad = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() for t in ts if group(t) in FORBIDDEN.get(group(m), set()))
    assert not bad, "core packages importing each other, or tasks and solvers reading files:\n" + "\n".join(bad)


def test_base_modules_import_only_errors():
    bad = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() if group(m) in BASE for t in ts
                 if group(t) not in ("errors", group(m)))
    assert not bad, "\n".join(bad)


def test_no_import_circle():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"import circles: {cycles}"


@pytest.mark.parametrize("source, expected", [
    ("from ..errors import InputError", {"medscore.errors"}),
    ("from .. import metrics as M", {"medscore.metrics"}),
    ("def f():\n    from ..api import denoise", {"medscore.api"}),
])
def test_the_walker_sees_relative_and_function_imports(tmp_path, source, expected):
    path = tmp_path / "x.py"
    path.write_text(source)
    assert _targets("medscore.tasks.x", path, False) == expected


def test_the_walker_catches_an_upward_import(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("def f():\n    from ..cli.main import app\n")
    assert any(layer(t) > layer("medscore.tasks.x") for t in _targets("medscore.tasks.x", path, False))
