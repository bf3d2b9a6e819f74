"""Gradient-boosted heads (GBNN) on real small data: the boosting maths, the merge, the truncated variants,
bad input, and the family through save/load, export and a real onnxruntime session."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit import export, runtime
from slimkit.compress import Family, data, evaluate, fit, zoo
from slimkit.compress.boost import BoostConfig, Booster, boost, head_features
from slimkit.runtime.errors import ConfigError, UnsupportedModelError

OPTS = {"units": 3, "l2": 1.0, "progress": False}


@pytest.fixture(scope="module")
def wine():
    return data.sklearn_dataset("wine")


@pytest.fixture(scope="module")
def diabetes():
    return data.sklearn_dataset("diabetes")


@pytest.fixture(scope="module")
def teacher(wine):
    torch.manual_seed(0)
    model = zoo.build("mlp", in_features=13, num_classes=3, hidden=[16])
    fit(model, wine.train, epochs=5, progress=False)
    return model


@pytest.fixture(scope="module")
def family(teacher, wine):
    return boost(teacher, train=wine.train, val=wine.val, stages=4, shrinkage=0.5, **OPTS)


def _inputs(loader) -> torch.Tensor:
    return torch.cat([x for x, _ in loader])


def _booster(task: str, splits, **kw) -> tuple[Booster, torch.Tensor, torch.Tensor]:
    x, y = splits.train.dataset.tensors
    cfg = BoostConfig(stages=4, units=3, task=task, shrinkage=0.5, l2=1.0, **kw)
    return Booster(cfg).fit(x, y, classes=splits.num_classes), x, y


# -- the boosting maths -----------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_merged_layer_equals_the_sum_of_stages(task, wine, diabetes):
    booster, x, _ = _booster(task, wine if task == "classification" else diabetes)
    for t in range(1, 5):
        head = booster.head(t)
        assert head.hidden.out_features == 3 * t
        torch.testing.assert_close(head(x), booster.predict(x, t), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(booster.predict(x, 2), booster.predict(x, 4), atol=1e-3)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_f0_minimises_the_loss_and_each_step_is_the_shrunk_newton_step(task, wine, diabetes):
    booster, x, y = _booster(task, wine if task == "classification" else diabetes)
    loss = (lambda f: F.cross_entropy(f, y, reduction="sum")) if task == "classification" else \
        (lambda f: 0.5 * ((f - y) ** 2).sum())
    f0 = booster.predict(x, 0).requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(f0), f0)
    assert grad.sum(0).abs().max() < 1e-3  # no constant shift lowers the loss
    xs = (x - booster.mean) / booster.std
    for t, (net, rho) in enumerate(zip(booster.learners, booster.rhos)):
        f, h = booster.predict(x, t), net(xs)
        step = torch.zeros((), requires_grad=True)
        (g,) = torch.autograd.grad(loss(f + step * h), step, create_graph=True)
        (curv,) = torch.autograd.grad(g, step)
        assert rho != 0.0
        assert rho == pytest.approx(0.5 * float(-g.detach() / curv), rel=1e-4)
    start = F.cross_entropy(f0, y) if task == "classification" else F.mse_loss(f0, y)
    assert booster.train_loss[-1] < booster.train_loss[0] < float(start.detach())


def test_the_same_seed_boosts_the_same_stages_and_subsample_matters(wine):
    a, x, _ = _booster("classification", wine)
    b, _, _ = _booster("classification", wine)
    c, _, _ = _booster("classification", wine, subsample=1.0)
    torch.testing.assert_close(a.predict(x), b.predict(x), atol=0, rtol=0)
    assert not torch.allclose(a.predict(x), c.predict(x), atol=1e-3)


# -- the family -------------------------------------------------------------------------------------------
def test_variants_are_stage_counts_sorted_by_macs(family, teacher):
    assert family.method == "boost" and family.names == ["s1", "s2", "s3", "s4"]
    macs = [v.macs for v in family]
    assert macs == sorted(macs) and len(set(macs)) == 4
    for t, v in enumerate(family, start=1):
        assert v.model.head.hidden.out_features == 3 * t and v.config["shape"]["stages"] == t
        assert v.config["shape"]["head"] == "head" and len(v.config["info"]["rho"]) == t
    assert family.select(budget=family["s2"].macs / family.largest.macs).name == "s2"
    assert family.largest.metrics["accuracy"] >= 0.85
    assert family.largest.metrics["train_loss"] < family.smallest.metrics["train_loss"]


def test_variant_t_is_the_boosted_model_stopped_at_step_t(family, teacher, wine):
    stopped = boost(teacher, train=wine.train, val=wine.val, stages=2, shrinkage=0.5, **OPTS)
    x = _inputs(wine.val)
    torch.testing.assert_close(family["s2"].model(x), stopped.largest.model(x), atol=1e-6, rtol=1e-6)
    assert not torch.allclose(family["s2"].model(x), family["s4"].model(x), atol=1e-3)
    # the full variant computes F0 + sum of its stages on the teacher's frozen features
    wine.train.generator.manual_seed(0)  # boost re-seeds the train loader with its seed: the same rows, in order
    train_feats, y = head_features(teacher, teacher.head, wine.train)
    booster = Booster(BoostConfig.from_dict(family.largest.config["recipe"])).fit(train_feats, y, classes=3)
    feats, _ = head_features(teacher, teacher.head, wine.val)
    torch.testing.assert_close(family["s4"].model(x), booster.predict(feats, 4), atol=1e-5, rtol=1e-5)


def test_teacher_is_never_modified_and_the_backbone_is_frozen(teacher, wine):
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    grads = [p.requires_grad for p in teacher.parameters()]
    teacher.train()
    fam = boost(teacher, train=wine.train, stages=2, **OPTS)
    assert teacher.training and [p.requires_grad for p in teacher.parameters()] == grads
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k])
    teacher.eval()
    for v in fam:
        assert v.model.head is not teacher.head
        for name, p in v.model.body.named_parameters():
            assert not p.requires_grad and torch.equal(p, before[f"body.{name}"])


def test_regression_on_a_bare_linear_model(diabetes):
    fam = boost(nn.Linear(10, 1), train=diabetes.train, val=diabetes.val, task="regression", stages=3, **OPTS)
    assert isinstance(fam.largest.model, nn.Sequential) and fam.largest.config["shape"]["head"] == ""
    for split in (diabetes.val, diabetes.test):  # better than the constant F0 (the train mean, 0)
        _, y = split.dataset.tensors
        mse = evaluate(fam.largest.model, split, task="regression")["mse"]
        assert mse < float((y ** 2).mean())
    assert mse < 0.75 * float((y ** 2).mean())  # on test; the 44-sample val split is hard for every model


def test_default_head_is_the_last_linear_that_runs(wine):
    class Late(nn.Module):  # the head is registered before the body
        def __init__(self):
            super().__init__()
            self.fc_out = nn.Linear(8, 3)
            self.body = nn.Sequential(nn.Linear(13, 8), nn.ReLU())

        def forward(self, x):
            return self.fc_out(self.body(x))

    fam = boost(Late(), train=wine.train, stages=1, **OPTS)
    assert fam.largest.config["shape"]["head"] == "fc_out" and fam.largest.config["shape"]["in_features"] == 8


# -- bad input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,match", [
    ({"head": "nope"}, r"head='nope' is not a module .*\['body.0', 'head'\]"),
    ({"head": "body.1"}, r"head='body.1' is a ReLU, not an nn.Linear; .*\['body.0', 'head'\]"),
    ({"stages": 0}, r"stages must be an int >= 1, got 0"),
    ({"units": 0}, r"units must be an int >= 1, got 0"),
    ({"units": 2.5}, r"units must be an int >= 1, got 2.5"),
    ({"shrinkage": 0.0}, r"shrinkage must be a number in \(0, 1\], got 0.0"),
    ({"shrinkage": 1.5}, r"shrinkage must be a number in \(0, 1\], got 1.5"),
    ({"subsample": 0}, r"subsample must be a number in \(0, 1\], got 0"),
    ({"subsample": 1.01}, r"subsample must be a number in \(0, 1\], got 1.01"),
    ({"task": "ranking"}, r"task='ranking' is not one of \('classification', 'regression'\)"),
    ({"activation": "gelu"}, r"activation='gelu' is not one of"),
    ({"stage_counts": [0, 2]}, r"stage_counts must be distinct ints in 1..stages=4, got \[0, 2\]"),
    ({"task": "regression"}, r"task='regression' needs 3 target value\(s\) per sample"),
])
def test_bad_options_raise_config_errors_naming_the_value(teacher, wine, kw, match):
    with pytest.raises(ConfigError, match=match):
        boost(teacher, train=wine.train, **{"stages": 4, **OPTS, **kw})


def test_heads_boost_cannot_replace(teacher, wine, diabetes):
    with pytest.raises(UnsupportedModelError, match=r"not the output of head 'body.0'"):
        boost(teacher, train=wine.train, head="body.0", **OPTS)
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(13, 13)

        def forward(self, x):
            return self.fc(self.fc(x))[:, :3]

    with pytest.raises(UnsupportedModelError, match=r"head 'fc' runs 2 times per forward pass"):
        boost(Twice(), train=wine.train, **OPTS)
    per_step = nn.Sequential(nn.Unflatten(1, (13, 1)), nn.Linear(1, 3), nn.Flatten())
    with pytest.raises(UnsupportedModelError, match=r"head '1' receives inputs of shape \(2, 13, 1\)"):
        boost(per_step, train=wine.train, **OPTS)
    with pytest.raises(UnsupportedModelError, match="transformed after the head"):
        boost(nn.Sequential(nn.Linear(13, 3), nn.LogSoftmax(-1)), train=wine.train, **OPTS)
    with pytest.raises(UnsupportedModelError, match="runs no nn.Linear"):
        boost(nn.Sequential(nn.Conv1d(1, 3, 1), nn.Flatten()), train=wine.train,
              example_input=torch.randn(2, 1, 1), **OPTS)
    with pytest.raises(ConfigError, match=r"head '' has 1 output; task='classification' needs one logit"):
        boost(nn.Linear(10, 1), train=diabetes.train, **OPTS)


# -- save/load, export, runtime ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cnn_family(tmp_path_factory):
    splits = data.mnist1d(num_samples=600, layout="channels", cache_dir=tmp_path_factory.mktemp("cache"))
    torch.manual_seed(0)
    cnn = zoo.build("rescnn", channels=(4, 8), depths=(0, 0))
    fit(cnn, splits.train, epochs=1, progress=False)
    return cnn, splits, boost(cnn, train=splits.train, val=splits.val, stages=3, units=4, progress=False)


def test_cnn_family_saves_loads_exports_and_serves_by_budget(cnn_family, tmp_path):
    cnn, splits, fam = cnn_family
    x = _inputs(splits.test)
    for model in (None, cnn):  # a zoo backbone rebuilds from the recipe; a user model is passed in
        loaded = Family.load(fam.save(tmp_path / f"fam-{model is None}"), model=model)
        assert loaded.names == fam.names
        for a, b in zip(fam, loaded):
            torch.testing.assert_close(a.model(x), b.model(x), atol=1e-6, rtol=1e-6)
    path = export.bundle(fam, fam.example_input, tmp_path / "bundle")
    engine = runtime.load(path)
    assert engine.names == fam.names
    xn = x[:64].numpy()
    for v in fam:
        out = engine.run(xn, variant=v.name)
        np.testing.assert_allclose(out, v.model(x[:64]).detach().numpy(), atol=1e-4, rtol=1e-4)
    engine.run(xn, budget=fam["s2"].macs / fam.largest.macs)
    assert engine.last == "s2"
    engine.run(xn, budget=1.0)
    assert engine.last == "s3"
