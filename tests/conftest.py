"""Shared fixtures. Name fixtures specifically (several test modules add their own here)."""

from __future__ import annotations

import pytest
import torch

# One PyTorch thread: the test models are tiny, and on a shared 2-core machine two OpenMP threads
# stalled training ~30x whenever another process held a core.
torch.set_num_threads(1)

# -- export / runtime --------------------------------------------------------------------------------


def _tiny_mlp_family():
    import torch
    from torch import nn

    from slimkit.compress.family import Family, Variant

    torch.manual_seed(0)
    example = torch.randn(1, 16)
    variants = [
        Variant.measure(f"w{h}", nn.Sequential(nn.Linear(16, h), nn.ReLU(), nn.Linear(h, 4)), example,
                        metrics={"accuracy": h / 100}, config={"hidden": h})
        for h in (8, 16, 32)
    ]
    return Family(variants, method="test", example_input=example, source={"params": 1, "macs": 1})


@pytest.fixture(scope="session")
def tiny_mlp_family():
    """Three MLP variants 16 -> h -> 4 (h = 8, 16, 32; MACs 160, 320, 640), cheapest first."""
    return _tiny_mlp_family()


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_mlp_family):
    """A bundle of ``tiny_mlp_family``, exported once per session. Do not modify: copy it first."""
    from slimkit import export

    path = tmp_path_factory.mktemp("tiny_bundle") / "bundle"
    export.bundle(tiny_mlp_family, tiny_mlp_family.example_input, path)
    return path
