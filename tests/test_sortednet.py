"""SortedNet: lossless surgery tested exactly, training tested on real MNIST-1D, bad input tested loudly."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.compress import Family, SortedNet, data, evaluate, graph, sortednet, zoo
from slimkit.compress.reorder import sort_channels
from slimkit.runtime.errors import BudgetError, ConfigError, UnsupportedModelError


class MobileNetish(nn.Module):
    """A 2-D model the zoo does not have: depthwise-separable residual blocks, a concat, a Linear head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.bn = nn.BatchNorm2d(16)
        self.branch_a = nn.Conv2d(16, 8, 1)
        self.branch_b = nn.Conv2d(16, 8, 3, padding=1)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.bn(self.pw(F.relu(self.dw(x)))))  # residual around a depthwise block
        x = torch.cat([F.relu(self.branch_a(x)), F.relu(self.branch_b(x))], dim=1)
        return self.head(x.mean((2, 3)))


def _randomise_bn(model):
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return model.eval()


MODELS = {
    "rescnn": (lambda: zoo.build("rescnn"), (4, 1, 40), (0.5, 1.0)),
    "transformer": (lambda: zoo.build("transformer"), (4, 40, 1), (0.5, 1.0)),
    "mlp": (lambda: zoo.build("mlp"), (4, 40), None),
    "mobilenetish": (MobileNetish, (4, 3, 8, 8), None),
}


@pytest.mark.parametrize("name", MODELS)
def test_extracted_module_equals_supernet_at_every_size(name):
    make, shape, depths = MODELS[name]
    torch.manual_seed(0)
    model = _randomise_bn(make())
    x = torch.randn(*shape)
    sn = SortedNet(model, example_input=x, widths=(0.25, 0.5, 1.0), depths=depths).eval()
    sizes = []
    for width, depth in sn.menu:
        with sn.use(width=width, depth=depth):
            expected = sn(x)
        small = sn.extract(width, depth)
        torch.testing.assert_close(small(x), expected, rtol=0, atol=1e-6)
        sizes.append(sum(p.numel() for p in small.parameters()))
    assert sizes[0] == min(sizes) and sizes[-1] == max(sizes) and sizes[0] < sizes[-1] / 3
    # reordering channels by importance is a permutation: the full sub-network is the original model
    torch.testing.assert_close(sn(x), model(x), rtol=1e-5, atol=1e-5)


def _masked_copy(sn: SortedNet, width: float) -> nn.Module:
    """The full architecture with every unit outside the width-``width`` prefix zeroed (independent check)."""
    sub = sn._sub((width, 1.0))
    masked = copy.deepcopy(sn.model).eval()
    state = masked.state_dict()
    with torch.no_grad():
        for name, spec in sub.index_map.items():
            t = state[name]
            keep = torch.zeros_like(t, dtype=torch.bool)
            idx = [torch.arange(s) if isinstance(s, int) else s for s in spec]
            keep[torch.meshgrid(*idx, indexing="ij")] = True
            if name.endswith("running_var"):
                t[~keep] = 1.0
            else:
                t[~keep] = 0.0
            if name in sub.buffers:  # this width's own BatchNorm statistics
                t[keep] = sub.buffers[name].reshape(-1)
    return masked


@pytest.mark.parametrize("name", ["rescnn", "transformer", "mobilenetish"])
def test_sliced_network_equals_masked_full_network(name):
    make, shape, _ = MODELS[name]
    torch.manual_seed(1)
    model = _randomise_bn(make())
    x = torch.randn(*shape)
    sn = SortedNet(model, example_input=x, widths=(0.25, 0.5, 1.0), reorder=False).eval()
    for width in (0.25, 0.5):
        torch.testing.assert_close(sn.extract(width)(x), _masked_copy(sn, width)(x), rtol=1e-5, atol=1e-5)


def test_reorder_puts_strongest_channels_first_and_keeps_the_function():
    torch.manual_seed(0)
    model = zoo.build("mlp", hidden=(32,))
    with torch.no_grad():
        model.body[0].weight[-1].mul_(50)  # the last hidden unit is by far the strongest
    x = torch.randn(8, 40)
    before = model(x)
    analysis = graph.analyze(model, x)
    sort_channels(model, x, analysis)
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-4)
    norms = model.body[0].weight.norm(dim=1)
    assert torch.argmax(norms) == 0


def test_attention_is_sliced_by_whole_heads():
    model = zoo.build("transformer")
    x = torch.randn(2, 40, 1)
    sn = SortedNet(model, example_input=x, widths=(0.5, 1.0))
    heads = [g for g in sn.analysis.groups if g.kind == "heads"]
    assert heads and all(g.unit == model.blocks[0].attn.head_dim for g in heads)
    small = sn.extract(0.5)
    q = small.blocks[0].attn.q_proj
    assert q.out_features == model.blocks[0].attn.q_proj.out_features // 2
    assert any(g for g in sn.analysis.frozen if "LayerNorm" in g[1])  # d_model stays full


def test_depth_cuts_trailing_blocks_of_each_stack():
    model = zoo.build("rescnn", depths=(2, 3))
    x = torch.randn(2, 1, 40)
    sn = SortedNet(model, example_input=x, widths=(1.0,), depths=(0.34, 1.0))
    small = sn.extract(1.0, 0.34)
    kept = [sum(not isinstance(b, graph.Skip) for b in stage.blocks) for stage in small.stages]
    assert kept == [1, 2]


def test_bad_menu_and_unsupported_models_raise_clear_errors():
    model = zoo.build("mlp")
    x = torch.randn(2, 40)
    sn = SortedNet(model, example_input=x, widths=(0.25, 0.5, 0.75, 1.0))
    with pytest.raises(ConfigError, match=r"width 0.3 is not in this model's menu \(0.25, 0.5, 0.75, 1.0\)"):
        with sn.use(width=0.3):
            pass
    for bad in [(), (0.0, 1.0), (1.5,), "wide"]:
        with pytest.raises(ConfigError, match="widths"):
            SortedNet(model, example_input=x, widths=bad)
    with pytest.raises(UnsupportedModelError, match="nothing to shrink.*Sequential"):  # only an output layer
        SortedNet(nn.Sequential(nn.Linear(40, 10)), example_input=x, widths=(0.5, 1.0))

    class TwoOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x), x

    with pytest.raises(UnsupportedModelError, match="TwoOutputs returns tuple"):
        SortedNet(TwoOutputs(), example_input=torch.randn(2, 4), widths=(0.5, 1.0))
    with pytest.raises(UnsupportedModelError, match="no stack of identical"):
        SortedNet(model, example_input=x, widths=(0.5, 1.0), depths=(0.5, 1.0))


@pytest.fixture(scope="module")
def mnist1d_mlp_family(tmp_path_factory):
    splits = data.mnist1d(num_samples=3000, layout="flat", cache_dir=tmp_path_factory.mktemp("cache"))
    torch.manual_seed(0)
    teacher = zoo.build("mlp", hidden=(128, 128))
    original = copy.deepcopy(teacher.state_dict())
    fam = sortednet(teacher, train=splits.train, val=splits.val, widths=(0.25, 0.5, 1.0), epochs=12,
                    progress=False, seed=0, lr=5e-3)
    return splits, teacher, original, fam


def test_sorted_training_on_mnist1d_gives_a_working_family(mnist1d_mlp_family):
    splits, teacher, original, fam = mnist1d_mlp_family
    assert isinstance(fam, Family) and fam.names == ["w0.25", "w0.50", "w1.00"]
    assert [v.macs for v in fam] == sorted(v.macs for v in fam)
    for v in fam:
        assert v.metrics["accuracy"] > 0.3, v  # chance is 0.10; an MLP tops out near 0.6 here
        assert v.config["shape"]["channels"] and tuple(v.config["recipe"]["widths"]) == (0.25, 0.5, 1.0)
    assert fam.select(budget=1.0).name == "w1.00"
    half = fam["w0.50"].macs / fam.largest.macs
    assert fam.select(budget=half).name == "w0.50"  # exactly fits
    assert fam.select(budget=half * 0.99).name == "w0.25"
    with pytest.raises(BudgetError):
        fam.select(budget=0.01)
    # the user's model is untouched
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, original[k]), k


def test_variants_are_nested_prefixes(mnist1d_mlp_family):
    _, _, _, fam = mnist1d_mlp_family
    small, big = fam["w0.25"].model, fam["w0.50"].model
    w_small, w_big = small.body[0].weight, big.body[0].weight
    torch.testing.assert_close(w_small, w_big[: w_small.shape[0]], rtol=0, atol=0)


def test_family_save_and_load_round_trip(mnist1d_mlp_family, tmp_path):
    splits, teacher, _, fam = mnist1d_mlp_family
    fam.save(tmp_path / "fam")
    assert not list((tmp_path / "fam").glob("*.pt"))  # safetensors + JSON only, no pickles
    loaded = Family.load(tmp_path / "fam")  # zoo model: rebuilt without the user's help
    x = next(iter(splits.test))[0]
    for a, b in zip(fam, loaded):
        assert (a.name, a.params, a.macs) == (b.name, b.params, b.macs)
        torch.testing.assert_close(a.model(x), b.model(x), rtol=0, atol=0)
    acc = evaluate(loaded["w0.50"].model, splits.val)["accuracy"]
    assert acc == pytest.approx(fam["w0.50"].metrics["accuracy"])
    with pytest.raises(ConfigError, match="not empty"):
        fam.save(tmp_path / "fam")


def test_batchnorm_statistics_are_calibrated_per_width(tmp_path):
    splits = data.mnist1d(num_samples=1000, layout="channels", cache_dir=tmp_path)
    model = zoo.build("rescnn", channels=(16, 32), depths=(1, 1))
    sn = SortedNet(model, example_input=splits.example_input, widths=(0.5, 1.0), calibration_batches=3)
    sn.fit(splits.train, epochs=0, progress=False)
    half, full = sn.extract(0.5), sn.extract(1.0)
    m_half, m_full = half.stem[1].running_mean, full.stem[1].running_mean
    assert m_half.shape[0] == 8 and not torch.allclose(m_half, torch.zeros_like(m_half))
    # the stem sees the raw input at every width, so its kept channels have the full model's statistics
    torch.testing.assert_close(m_half, m_full[:8], rtol=1e-4, atol=1e-5)
    # statistics downstream of a narrower layer differ from the full model's
    assert not torch.allclose(half.stages[0].blocks[0].bn2.running_var, full.stages[0].blocks[0].bn2.running_var[:8])
    sn.calibrate(splits.val)
    first = sn.extract(0.5).stem[1].running_mean
    sn.calibrate(splits.val)
    torch.testing.assert_close(sn.extract(0.5).stem[1].running_mean, first, rtol=0, atol=0)  # deterministic
