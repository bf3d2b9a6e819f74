"""What users made or wrote before the method packages keeps working: saved families and old import paths."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from slimkit.compress import Family

OLD = Path(__file__).parent / "data" / "families_v0"  # saved by slimkit at commit e98ec1a (see make.py there)


@pytest.mark.parametrize("name", sorted(p.name for p in OLD.iterdir() if p.is_dir()))
def test_families_saved_before_the_method_packages_still_load(name):
    fam = Family.load(OLD / name)  # zoo base models: no model needed
    expected = json.loads((OLD / name / "expected.json").read_text())
    x = torch.tensor(expected["input"])
    assert fam.names == sorted(expected["outputs"], key=fam.names.index)
    for v in fam:
        with torch.no_grad():
            torch.testing.assert_close(v.model(x), torch.tensor(expected["outputs"][v.name]), rtol=1e-5, atol=1e-6)
        assert set(v.config) == {"method", "recipe", "shape", "info"} and v.config["method"] == fam.method


@pytest.mark.parametrize("old,new", [
    ("slimkit.compress.n2n_search", "slimkit.compress.n2n.config"),
    ("slimkit.compress.snnk_blocks", "slimkit.compress.snnk.blocks"),
    ("slimkit.compress.snnk_features", "slimkit.compress.snnk.features"),
    ("slimkit.compress.snnk_fit", "slimkit.compress.snnk.fit"),
    ("slimkit.compress.sparse_rnn_masks", "slimkit.compress.sparse_rnn.masks"),
    ("slimkit.compress.sparse_rnn_shrink", "slimkit.compress.sparse_rnn.shrink"),
    ("slimkit.compress.sparse_rnn_graph", "slimkit.compress.sparse_rnn.random_graphs"),
])
def test_old_module_paths_import_the_moved_modules_with_a_warning(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


def test_public_names_keep_their_old_import_paths():
    from slimkit.compress.boost import BoostConfig, Booster, boost, boosted_head  # noqa: F401
    from slimkit.compress.n2n import COSTS, RATIOS, N2NConfig, n2n  # noqa: F401
    from slimkit.compress.snnk import KINDS, MODES, SNNKConfig, select_targets, snnk  # noqa: F401
    from slimkit.compress.snnk_blocks import SNNKBlock, find_blocks  # noqa: F401
    from slimkit.compress.sortednet import SortedNet, SortedNetConfig, sortednet  # noqa: F401
    from slimkit.compress.sparse_rnn import GRAPHS, SCOPES, SparseRNNConfig, sparse_rnn  # noqa: F401
