"""The house: each package registers its own command, imports run one way (no cycles,
nothing upwards; the engine imports none of the task packages)."""

from __future__ import annotations

import ast
from pathlib import Path

from imod.cli import COMMANDS, build_parser

REPO = Path(__file__).resolve().parents[1]


def test_every_command_is_registered_by_its_package():
    """Each package's cli module adds its own command; the root lists them all."""
    parser = build_parser()
    for name, (module, _) in COMMANDS.items():
        args = parser.parse_args([name])
        assert args.func.__module__ == module, name


# --------------------------------------------------------------------------- imports

#: Who may import whom: a package imports only packages of a lower layer (or itself).
LAYERS = {"_runtime": 0, "_dataset": 0, "_version": 0, "engine": 1, "distributed": 2,
          "detector": 3, "memorization": 3, "bench": 4, "cli": 5, "__main__": 6}


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "imod":
        return None
    return parts[1] if len(parts) > 1 else "imod"


def _imports(path: Path, module: str) -> set[str]:
    """imod modules imported anywhere in a file (lazy imports inside functions included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found |= {f"{name}.{a.name}" for a in node.names}
    return {m for m in found if m.split(".")[0] == "imod"}


def test_imports_run_one_way():
    """engine <- distributed <- detector, memorization <- bench <- cli; no cycles.

    The root ``imod`` package is a lazy facade (``__version__``, detector classes on first
    use): importing ``from imod import __version__`` is allowed everywhere.
    """
    root = REPO / "imod"
    edges: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        src = _package(module)
        if src in (None, "imod"):
            continue
        for target in _imports(path, module):
            dst = _package(target)
            if dst in (None, "imod", src):
                continue
            if not ((root / dst).is_dir() or (root / f"{dst}.py").is_file()):
                continue  # a name imported from the root facade, e.g. __version__
            assert dst in LAYERS, f"{dst} has no layer in LAYERS: place it"
            edges.setdefault(src, set()).add(dst)
    bad = sorted(f"{a} -> {b}" for a, bs in edges.items() for b in bs
                 if LAYERS.get(b, 99) >= LAYERS.get(a, -1))
    assert not bad, f"imports that run upwards or sideways: {bad}"
    assert not edges.get("engine", set()) - {"_runtime"}, edges["engine"]
    assert "bench" not in edges.get("distributed", set())


def test_no_module_imports_a_package_above_it():
    """A module never imports its own package or one above it (``from .. import x``,
    ``from imod import __version__``): the arrow would point upwards. Packages' own
    ``__init__`` files gather their modules and are exempt; submodules imported by name
    (``from imod.bench import catalogue``) are modules, not the package."""
    root = REPO / "imod"
    bad = []
    for path in sorted(root.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        rel = path.relative_to(REPO).with_suffix("")
        module = ".".join(rel.parts)
        above = {".".join(rel.parts[:i]) for i in range(1, len(rel.parts))}
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                bad += [f"{module}: import {a.name}" for a in node.names if a.name in above]
            elif isinstance(node, ast.ImportFrom):
                base = module.split(".")[: len(rel.parts) - node.level] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                if target not in above:
                    continue
                for a in node.names:
                    sub = Path(REPO, *target.split("."), a.name)
                    if not (sub.with_suffix(".py").is_file() or sub.is_dir()):
                        bad.append(f"{module}: from {target} import {a.name}")
    assert not bad, bad
