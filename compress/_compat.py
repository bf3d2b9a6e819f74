"""Old import paths of ``slimkit.compress`` modules, from before the methods moved into packages.

``import slimkit.compress.snnk_blocks`` (and the other flat names below) keeps working: it returns the
module at its new place and warns once with a ``DeprecationWarning`` that names it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "install"]

MOVED = {
    "slimkit.compress.n2n_search": "slimkit.compress.n2n.config",
    "slimkit.compress.snnk_blocks": "slimkit.compress.snnk.blocks",
    "slimkit.compress.snnk_features": "slimkit.compress.snnk.features",
    "slimkit.compress.snnk_fit": "slimkit.compress.snnk.fit",
    "slimkit.compress.sparse_rnn_masks": "slimkit.compress.sparse_rnn.masks",
    "slimkit.compress.sparse_rnn_shrink": "slimkit.compress.sparse_rnn.shrink",
    "slimkit.compress.sparse_rnn_graph": "slimkit.compress.sparse_rnn.random_graphs",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; import from there (the old path will be removed)",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module: ModuleType) -> None:
        return None


def install() -> None:
    """Register the finder once (called by ``slimkit.compress``)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
