"""Reference models: shapes, sizes, the rebuild recipe, and the structure compression methods rely on."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch
from torch import nn

from slimkit.compress import zoo
from slimkit.compress.cost import count_macs, count_params
from slimkit.runtime.errors import ConfigError

# name -> (input shape without batch, parameter range of the default model)
ZOO_CASES = {
    "rescnn": ((1, 40), (70_000, 130_000)),
    "mlp": ((40,), (50_000, 120_000)),
    "gru": ((40, 1), (20_000, 120_000)),
    "lstm": ((40, 1), (20_000, 120_000)),
    "transformer": ((40, 1), (30_000, 150_000)),
}


def test_zoo_names_match_the_registry():
    assert zoo.names() == sorted(ZOO_CASES)


@pytest.mark.parametrize("name", sorted(ZOO_CASES))
def test_zoo_model_forward_shape_params_and_macs(name):
    shape, (lo, hi) = ZOO_CASES[name]
    torch.manual_seed(0)
    model = zoo.build(name).eval()
    x = torch.randn(5, *shape)
    out = model(x)
    assert out.shape == (5, 10) and torch.isfinite(out).all()
    assert lo <= count_params(model) <= hi
    assert count_macs(model, x) > 0
    assert torch.allclose(model(x[:1]), out[:1], atol=1e-5)  # samples are independent in eval mode


@pytest.mark.parametrize("name", sorted(ZOO_CASES))
def test_zoo_model_records_a_json_recipe_that_rebuilds_it(name):
    model = zoo.build(name, num_classes=3)
    spec = json.loads(json.dumps(model.slimkit_zoo))  # survives JSON (tuples become lists)
    assert spec["name"] == name and spec["kwargs"]["num_classes"] == 3
    clone = zoo.build(spec["name"], **spec["kwargs"])
    clone.load_state_dict(model.state_dict())  # same architecture, parameter for parameter
    assert clone.slimkit_zoo == spec
    assert copy.deepcopy(model).slimkit_zoo == model.slimkit_zoo


def test_zoo_constructors_record_the_recipe_too():
    model = zoo.ResCNN1d(channels=(8, 16), depths=(1, 2))
    assert model.slimkit_zoo == {"name": "rescnn", "kwargs": {
        "in_channels": 1, "num_classes": 10, "channels": [8, 16], "depths": [1, 2], "kernel_size": 3}}
    assert zoo.RNNClassifier("lstm", hidden_size=8).slimkit_zoo["name"] == "lstm"


@pytest.mark.parametrize("name", sorted(ZOO_CASES))
def test_zoo_model_exports_with_a_dynamic_batch(name):
    shape, _ = ZOO_CASES[name]
    model = zoo.build(name).eval()
    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nn.GRU/LSTM flat-weights notice
        ep = torch.export.export(model, (torch.randn(2, *shape),), dynamic_shapes=({0: batch},))
    x = torch.randn(7, *shape)
    assert torch.allclose(ep.module()(x), model(x), atol=1e-5)


def test_rescnn_stage_blocks_are_identical_and_droppable():
    model = zoo.build("rescnn", depths=(2, 3)).eval()
    assert [len(s.blocks) for s in model.stages] == [2, 3]
    assert isinstance(model.stages[0].down, nn.Identity)  # stem already gives stage 0's width
    assert isinstance(model.stages[1].down, zoo.ResBlock1d)  # strided, 1x1-conv shortcut
    assert isinstance(model.stages[1].down.shortcut[0], nn.Conv1d)
    x = torch.randn(3, 1, 40)
    for stage in model.stages:
        shapes = {tuple(p.shape for p in b.parameters()) for b in stage.blocks}
        assert len(shapes) == 1
    h = model.stages[0](model.stem(x))
    assert model.stages[1].blocks[0](model.stages[1].down(h)).shape == (3, 64, 20)
    shallow = copy.deepcopy(model)
    shallow.stages[1].blocks = shallow.stages[1].blocks[:1]  # a depth-reduced sub-network
    assert shallow(x).shape == (3, 10)


def _keep_heads(model: zoo.TransformerClassifier, keep: list[int]) -> zoo.TransformerClassifier:
    """A copy whose attention keeps only the given heads' q/k/v rows and out_proj columns."""
    small = copy.deepcopy(model)
    for block in small.blocks:
        attn = block.attn
        idx = torch.cat([torch.arange(h * attn.head_dim, (h + 1) * attn.head_dim) for h in keep])
        for name in ("q_proj", "k_proj", "v_proj"):
            old = getattr(attn, name)
            new = nn.Linear(old.in_features, len(idx))
            new.weight.data, new.bias.data = old.weight.data[idx].clone(), old.bias.data[idx].clone()
            setattr(attn, name, new)
        old = attn.out_proj
        new = nn.Linear(len(idx), old.out_features)
        new.weight.data, new.bias.data = old.weight.data[:, idx].clone(), old.bias.data.clone()
        attn.out_proj = new
    return small


def test_transformer_runs_with_half_its_heads_sliced_away():
    torch.manual_seed(0)
    model = zoo.build("transformer", num_heads=4).eval()
    small = _keep_heads(model, [0, 2])
    x = torch.randn(3, 40, 1)
    # reference: the full model with the dropped heads' output columns zeroed (their contribution removed)
    masked = copy.deepcopy(model)
    for block in masked.blocks:
        hd = block.attn.head_dim
        for h in (1, 3):
            block.attn.out_proj.weight.data[:, h * hd:(h + 1) * hd] = 0
    assert small.blocks[0].attn.q_proj.out_features == 32
    assert torch.allclose(small(x), masked(x), atol=1e-5)
    assert not torch.allclose(small(x), model(x), atol=1e-3)
    assert count_params(small) < count_params(model)


def test_transformer_layout_for_slicing():
    model = zoo.build("transformer", d_model=32, num_heads=2, ffn_dim=48, num_layers=3)
    assert isinstance(model.blocks, nn.ModuleList) and len(model.blocks) == 3
    b = model.blocks[0]
    assert b.attn.head_dim == 16
    assert (b.ffn.fc1.out_features, b.ffn.fc2.in_features) == (48, 48)
    assert isinstance(b.ffn.act, nn.GELU) and isinstance(b.ln1, nn.LayerNorm) and isinstance(b.ln2, nn.LayerNorm)
    model.blocks[0].ffn.fc1 = nn.Linear(32, 24)  # a narrower FFN still runs
    model.blocks[0].ffn.fc2 = nn.Linear(24, 32)
    assert model(torch.randn(2, 40, 1)).shape == (2, 10)


@pytest.mark.parametrize("kwargs", [{"bidirectional": True}, {"num_layers": 2, "hidden_size": 16}])
def test_rnn_variants(kwargs):
    for cell in ("gru", "lstm"):
        model = zoo.build(cell, num_classes=4, **kwargs)
        assert model(torch.randn(2, 40, 1)).shape == (2, 4)


def test_mlp_hidden_widths_and_other_inputs():
    model = zoo.build("mlp", in_features=64, hidden=[32, 16, 8], num_classes=2)
    assert [m.out_features for m in model.body if isinstance(m, nn.Linear)] == [32, 16, 8]
    assert model(torch.randn(4, 64)).shape == (4, 2)


def test_build_unknown_name_lists_the_choices():
    with pytest.raises(ConfigError, match="nope.*gru.*lstm.*mlp.*rescnn.*transformer"):
        zoo.build("nope")


@pytest.mark.parametrize("name, kwargs, match", [
    ("mlp", {"widths": (3,)}, "does not accept"),
    ("transformer", {"d_model": 30, "num_heads": 4}, "divisible"),
    ("rescnn", {"channels": (8,), "depths": (1, 1)}, "same length"),
    ("rescnn", {"kernel_size": 4}, "odd"),
    ("gru", {"hidden_size": 0}, "hidden_size"),
])
def test_build_rejects_bad_kwargs(name, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        zoo.build(name, **kwargs)
