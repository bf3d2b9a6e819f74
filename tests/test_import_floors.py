"""The dependency floors of shared/DESIGN.md, read from the source (every import, at any depth).

export (top) -> compress and runtime; compress -> policies. runtime imports neither torch (except the torch
backend, lazily) nor compress/export/policies; policies never imports compress or export; compress imports
of runtime only the two dependency-free leaves, runtime/errors.py and runtime/budget.py. And no private
name (``_x``) is imported from another slimkit module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("compress", "export", "policies", "runtime")
LEAVES = {"slimkit.runtime.errors", "slimkit.runtime.budget"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["slimkit", *parts])


def _imports(path: Path):
    """Yield (imported module, imported names, at module level?) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    top_level = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], id(node) in top_level
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            yield base, [a.name for a in node.names], id(node) in top_level


def _sources(folder: str):
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", FOLDERS)
def test_each_folder_keeps_to_its_floor(folder):
    bad = []
    for path in _sources(folder):
        rel = path.relative_to(ROOT)
        for module, _names, top in _imports(path):
            if folder == "runtime":
                if module.startswith(("slimkit.compress", "slimkit.export", "slimkit.policies")):
                    bad.append(f"{rel}: imports {module}")
                if module.split(".")[0] == "torch" and (top or path.name != "backends_torch.py"):
                    bad.append(f"{rel}: imports torch" + (" at import time" if top else ""))
            elif folder == "policies":
                if module.startswith(("slimkit.compress", "slimkit.export")):
                    bad.append(f"{rel}: imports {module}")
                if module.startswith("slimkit.runtime") and module not in LEAVES:
                    bad.append(f"{rel}: imports {module} (only runtime's errors and budget leaves)")
            elif folder == "compress":
                if module.startswith("slimkit.export"):
                    bad.append(f"{rel}: imports {module}")
                if module.startswith("slimkit.runtime") and module not in LEAVES:
                    bad.append(f"{rel}: imports {module} (only runtime's errors and budget leaves)")
    assert not bad, "\n".join(bad)


def test_no_private_name_crosses_a_module():
    bad = []
    for folder in FOLDERS:
        for path in _sources(folder):
            own = _module_name(path) if path.name == "__init__.py" else None  # a package's own private parts
            for module, names, _top in _imports(path):
                if module.startswith("slimkit.") and module != own:
                    bad += [f"{path.relative_to(ROOT)}: from {module} import {n}" for n in names
                            if n.startswith("_") and not n.startswith("__")]
    assert not bad, "\n".join(bad)


def test_the_runtime_leaves_import_only_each_other():
    for leaf in LEAVES:
        path = ROOT / (leaf.removeprefix("slimkit.").replace(".", "/") + ".py")
        assert not [m for m, _, _ in _imports(path) if m.startswith("slimkit") and m not in LEAVES], leaf
