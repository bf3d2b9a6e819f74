"""SNNK (arXiv 2310.13225): estimators, block discovery, both fitting modes, export, save/load, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.compress import data, fit, zoo
from slimkit.compress.family import Family
from slimkit.compress.snnk import snnk
from slimkit.compress.snnk.blocks import SNNKBlock, find_blocks, init_from_weights
from slimkit.compress.snnk.features import RandomFeatures, arccos_kernel
from slimkit.compress.snnk.fit import POOL_SEED_OFFSET
from slimkit.runtime.errors import ConfigError, UnsupportedModelError

# -- estimators ---------------------------------------------------------------------------------------


def _estimate_error(kind: str, m: int, seeds=range(6)) -> float:
    """Mean (over seeds) of the relative RMS error of <phi(x), psi(w, b)> against the kernel's target."""
    gen = torch.Generator().manual_seed(123)
    d = 8
    x = torch.randn(16, d, generator=gen) / 3
    w = torch.randn(6, d, generator=gen) / 3
    b = torch.randn(6, generator=gen) * 0.3
    errs = []
    for seed in seeds:
        phi = RandomFeatures(d, m, kind=kind, seed=seed)
        phi.calibrate(x.norm(dim=1).pow(2).mean().sqrt(), w.norm(dim=1).pow(2).mean().sqrt())
        est = phi(x).double() @ phi.psi(w, b).T
        if kind == "relu":
            s = phi.scale.item()
            target = arccos_kernel(torch.cat([x * s, torch.ones(16, 1)], 1).double(),
                                   torch.cat([w / s, b[:, None]], 1).double())
        else:
            target = {"cos": torch.cos, "sin": torch.sin, "exp": torch.exp}[kind]((x @ w.T + b).double())
        errs.append(float((est - target).pow(2).mean().sqrt() / target.pow(2).mean().sqrt()))
    return float(np.mean(errs))


@pytest.mark.parametrize("kind", ["relu", "exp", "cos", "sin"])
def test_kernel_estimate_converges_to_its_target(kind):
    errors = [_estimate_error(kind, m) for m in (16, 256, 4096)]
    assert errors[0] > errors[1] > errors[2], errors  # error falls with m (Monte Carlo, ~m^-1/2)
    assert errors[2] < 0.12, errors
    assert errors[0] / errors[2] > 4, errors  # 256x the features: ~16x less error expected; allow noise


def test_iid_gaussian_projection_is_also_unbiased():
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(4, 6, generator=gen) / 3, torch.randn(3, 6, generator=gen) / 3
    phi = RandomFeatures(6, 20000, kind="exp", seed=1, orthogonal=False)
    est = phi(x).double() @ phi.psi(w).T
    assert torch.allclose(est, torch.exp(x @ w.T).double(), rtol=0.05)


def test_relu_snnk_is_the_arccos_kernel_not_relu():
    # w.x < 0: ReLU(w.x) = 0 but the arc-cosine kernel (and its estimate) is positive
    x, w = torch.tensor([[1.0, 0.2]]), torch.tensor([[-0.3, 1.0]])
    phi = RandomFeatures(2, 20000, kind="relu", seed=0)
    g_x = torch.cat([x, torch.ones(1, 1)], 1)
    est = float(phi(x).double() @ phi.psi(w, torch.zeros(1)).T)
    assert float(x @ w.T) < 0 and est > 0.05
    assert est == pytest.approx(float(arccos_kernel(g_x.double(), torch.cat([w, torch.zeros(1, 1)], 1).double())),
                                rel=0.05)


def test_bundled_block_from_weights_approximates_a_cos_block():
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(6, 12), nn.Linear(12, 3)
    with torch.no_grad():
        fc1.weight.mul_(0.5)
        fc1.bias.mul_(0.5)
    x = torch.randn(64, 6) * 0.3
    y = fc2(torch.cos(fc1(x))).detach()
    errs = []
    for m in (16, 256, 8192):
        blk = SNNKBlock(6, 3, m, kind="cos", seed=2)
        blk.features[0].calibrate(x.norm(dim=1).pow(2).mean().sqrt(), fc1.weight.norm(dim=1).pow(2).mean().sqrt())
        init_from_weights(blk, [fc1, fc2])
        errs.append(float((blk(x).detach() - y).pow(2).mean().sqrt() / y.std()))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.1, errs


@pytest.mark.parametrize("kind,f", [("exp", torch.exp), ("cos", torch.cos)])
def test_two_layer_bundle_from_weights_converges(kind, f):
    """The paper's bundling: Theta = W_out Psi_2(W_2 Psi_1(W_1, b_1), b_2) on phi_2(phi_1(x))."""
    from slimkit.compress.snnk.blocks import calibrate_scales

    torch.manual_seed(0)
    l1, l2, l3 = nn.Linear(6, 10), nn.Linear(10, 8), nn.Linear(8, 3)
    with torch.no_grad():
        for lin in (l1, l2, l3):
            lin.weight.mul_(0.5)
            lin.bias.mul_(0.3)
    x = torch.randn(64, 6) * 0.4
    y = l3(f(l2(f(l1(x))))).detach()
    errs = []
    for m in (16, 256, 2048):
        e = []
        for seed in range(2):
            blk = SNNKBlock(6, 3, m, depth=2, kind=kind, seed=seed)
            calibrate_scales(blk, [l1, l2, l3], x)
            init_from_weights(blk, [l1, l2, l3])
            e.append(float((blk(x).detach() - y).pow(2).mean().sqrt() / y.std()))
        errs.append(float(np.mean(e)))
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.05, errs


# -- block discovery ----------------------------------------------------------------------------------


class _FunctionalFFN(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class _Residual(nn.Module):
    """The hidden activation is read twice: replacing fc1..fc2 would change the output."""

    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8)

    def forward(self, x):
        h = self.act(self.fc1(x))
        return self.fc2(h) + h


def test_find_blocks_in_zoo_models():
    mlp = zoo.build("mlp", hidden=[32, 32])
    names = [b.name for b in find_blocks(mlp, torch.randn(2, 40))]
    assert names == ["body.0..body.2", "body.0..head", "body.2..head"]
    tr = zoo.build("transformer", d_model=16, num_heads=2, ffn_dim=32)
    blocks = find_blocks(tr, torch.randn(2, 40, 1))
    assert [b.name for b in blocks] == ["blocks.0.ffn", "blocks.1.ffn"]
    assert blocks[0].activations == ("GELU",) and blocks[0].module == "blocks.0.ffn"
    assert find_blocks(mlp, torch.randn(2, 40))[0].module is None


def test_find_blocks_functional_activation_and_shared_hidden():
    blocks = find_blocks(_FunctionalFFN(), torch.randn(2, 8))
    assert [(b.name, b.module, b.activations) for b in blocks] == [("fc1..fc2", "", ("gelu",))]  # the model itself
    assert find_blocks(_Residual(), torch.randn(2, 8)) == []


# -- the method ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_small():
    return data.mnist1d(num_samples=2000, layout="flat", batch_size=100)


@pytest.fixture(scope="module")
def mlp_teacher(mnist_small):
    torch.manual_seed(0)
    model = zoo.build("mlp", hidden=[64, 64])
    fit(model, mnist_small.train, epochs=10, progress=False, seed=0)
    return model


def test_closed_form_fits_blocks_and_error_falls_with_m(mlp_teacher, mnist_small):
    before = {k: v.clone() for k, v in mlp_teacher.state_dict().items()}
    fam = snnk(mlp_teacher, train=mnist_small.train, val=mnist_small.val, features=(8, 32, 128),
               mode="closed_form", progress=False)
    assert fam.names == ["m8", "m32", "m128"] and fam.method == "snnk"
    assert all(torch.equal(before[k], v) for k, v in mlp_teacher.state_dict().items())  # teacher untouched
    rel = [v.config["info"]["closed_form"]["body.2..head"]["train_mse"] / v.config["info"]["closed_form"]["body.2..head"]["target_var"]
           for v in fam]
    assert rel[0] > rel[1] > rel[2] and rel[2] < 0.2, rel
    # the block shrinks: theta (10 x m) + bias replaces 64*64+64 + 64*10+10 parameters
    assert [v.config["info"]["block_params"] for v in fam] == [10 * m + 10 for m in (8, 32, 128)]
    assert fam.source["block_params"] == 64 * 64 + 64 + 64 * 10 + 10
    teacher_acc = fam.source["metrics"]["accuracy"]
    assert fam.largest.metrics["accuracy"] > teacher_acc - 0.1
    assert isinstance(fam.largest.model.get_submodule("body.2"), SNNKBlock)
    assert isinstance(fam.largest.model.head, nn.Identity)


def test_pool_keeps_the_candidate_features_that_fit_best(mlp_teacher, mnist_small):
    fams = {pool: snnk(mlp_teacher, train=mnist_small.train, features=(16, 32), mode="closed_form", pool=pool,
                       progress=False) for pool in (1, 4)}
    assert fams[1].largest.config["recipe"]["pool"] == 1
    for m in (16, 32):
        cf = {pool: fam[f"m{m}"].config["info"]["closed_form"]["body.2..head"] for pool, fam in fams.items()}
        rel = {pool: c["train_mse"] / c["target_var"] for pool, c in cf.items()}
        assert rel[4] < 0.9 * rel[1], rel  # m chosen among 4m candidates fit the block better than m drawn
        kept = cf[4]["selected"]
        assert cf[1]["selected"] is None and len(kept) == m and kept == sorted(set(kept)) and max(kept) < 4 * m
        # the kept rows are rows of the seeded candidate draw: regenerable from the seed and the indices
        phi = fams[4][f"m{m}"].model.get_submodule("body.2").features[0]
        cand = RandomFeatures(phi.in_features, 4 * m, kind="relu", seed=phi.seed + POOL_SEED_OFFSET)
        assert torch.equal(phi.proj, cand.proj[kept])
    # closed form defaults to pool=2; distillation from the weights keeps the first draw
    assert snnk(mlp_teacher, train=mnist_small.train, features=8, mode="closed_form", progress=False
                ).largest.config["recipe"]["pool"] == 2


def test_distill_mode_starts_from_weights_and_trains(mlp_teacher, mnist_small):
    fam = snnk(mlp_teacher, train=mnist_small.train, val=mnist_small.val, features=32, kind="relu",
               mode="distill", epochs=2, progress=False, targets="body.0..body.2")
    v = fam.largest
    assert list(v.config["recipe"]["targets"]) == ["body.0..body.2"]
    blk = v.model.get_submodule("body.0")
    assert isinstance(blk, SNNKBlock) and blk.theta.shape == (64, 32)
    assert v.metrics["accuracy"] > 0.2


def test_export_bundle_and_onnxruntime_match(tmp_path, mlp_teacher, mnist_small):
    import onnxruntime as ort

    from slimkit import export, runtime

    x = mnist_small.example_input
    for kind in ("relu", "cos", "exp"):
        fam = snnk(mlp_teacher, train=mnist_small.train, features=(8, 16), kind=kind, mode="closed_form",
                   progress=False, seed=1)
        path = export.to_onnx(fam.largest.model, x, tmp_path / f"{kind}.onnx")
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        batch = next(iter(mnist_small.val))[0]
        out = sess.run(None, {sess.get_inputs()[0].name: batch.numpy()})[0]
        ref = fam.largest.model(batch).detach().numpy()
        np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    bundle = export.bundle(fam, x, tmp_path / "bundle")
    eng = runtime.load(bundle)
    y = eng.run(x.numpy(), variant="m8")
    np.testing.assert_allclose(np.asarray(y), fam["m8"].model(x).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_transformer_ffns_save_load_roundtrip(tmp_path):
    splits = data.mnist1d(num_samples=200, layout="sequence", batch_size=50)
    torch.manual_seed(0)
    model = zoo.build("transformer", d_model=16, num_heads=2, ffn_dim=32, num_layers=2)
    fam = snnk(model, train=splits.train, features=(4, 8), kind="sin", mode="closed_form", progress=False,
               calibration_batches=3)
    assert [b["name"] for b in fam.largest.config["shape"]["blocks"]] == ["blocks.0.ffn", "blocks.1.ffn"]
    fam.save(tmp_path / "fam")
    back = Family.load(tmp_path / "fam")  # a zoo model: rebuilt without the user's help
    x = splits.example_input
    for v in fam:
        assert torch.allclose(back[v.name].model(x), v.model(x), atol=1e-6)


# -- bad input ------------------------------------------------------------------------------------------


def test_bad_input_errors(mlp_teacher, mnist_small):
    tr = mnist_small.train
    with pytest.raises(UnsupportedModelError, match="no replaceable block"):
        snnk(zoo.build("gru", hidden_size=8), train=data.mnist1d(num_samples=200, layout="sequence").train,
             progress=False)
    for bad in (0, -4, (16, 2.5), "16", (), True):
        with pytest.raises(ConfigError, match="features must be positive ints"):
            snnk(mlp_teacher, train=tr, features=bad, progress=False)
    with pytest.raises(ConfigError, match=r"kind='softplus' is not one of"):
        snnk(mlp_teacher, train=tr, kind="softplus", progress=False)
    with pytest.raises(ConfigError, match=r"mode='lbfgs' is not one of"):
        snnk(mlp_teacher, train=tr, mode="lbfgs", progress=False)
    with pytest.raises(ConfigError, match=r"'body\.9'.*choose among \['body\.0\.\.body\.2'"):
        snnk(mlp_teacher, train=tr, targets="body.9", progress=False)
    with pytest.raises(ConfigError, match="overlap"):
        snnk(mlp_teacher, train=tr, targets=["body.0..body.2", "body.2..head"], progress=False)
    with pytest.raises(ConfigError, match="even"):
        snnk(mlp_teacher, train=tr, kind="cos", features=(7,), progress=False)
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match="pool must be a positive int"):
            snnk(mlp_teacher, train=tr, mode="closed_form", pool=bad, progress=False)
    with pytest.raises(ConfigError, match="pool=3 .* needs mode='closed_form'"):
        snnk(mlp_teacher, train=tr, mode="distill", pool=3, progress=False)
    with pytest.raises(ConfigError, match="kept none"):
        snnk(mlp_teacher, train=tr, targets=lambda name, module: False, progress=False)


def test_filter_targets_receive_the_block_module(mlp_teacher, mnist_small):
    seen = []

    def pick(name, module):
        seen.append((name, type(module).__name__))
        return name == "body.0..head"

    fam = snnk(mlp_teacher, train=mnist_small.train, features=16, mode="closed_form", targets=pick,
               progress=False)
    # the whole MLP is the chain body.0..head, so the filter sees the model; a sub-chain, a Sequential
    assert seen == [("body.0..body.2", "Sequential"), ("body.0..head", "MLP"), ("body.2..head", "Sequential")]
    blk = fam.largest.model  # the model itself was the chain: the variant is one bundled block
    assert isinstance(blk, SNNKBlock) and len(blk.features) == 2  # two hidden layers: a two-map input tower
    assert math.isfinite(fam.largest.config["info"]["closed_form"]["body.0..head"]["train_mse"])


def test_regression_task_on_a_sklearn_table():
    splits = data.sklearn_dataset("diabetes")
    torch.manual_seed(0)
    model = zoo.MLP(in_features=10, num_classes=1, hidden=(32, 32))
    fit(model, splits.train, epochs=20, task="regression", progress=False)
    fam = snnk(model, train=splits.train, val=splits.val, features=(16, 64), mode="closed_form", epochs=2,
               task="regression", progress=False)
    assert set(fam.largest.metrics) == {"mse"} and fam.source["metrics"]["mse"] > 0
    assert fam.largest.metrics["mse"] < 1.5 * fam.source["metrics"]["mse"]  # targets are standardised
