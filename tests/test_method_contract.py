"""One contract for the five methods: the same refusals from the one preamble, configs that round-trip.

Every entry function runs :func:`slimkit.compress.preamble.prepare` first, so each bad input below must be
refused by every method with the same error class and message (the method's name aside), before any
training. Every method's config must round-trip through JSON, refuse unknown keys listing the valid ones,
and document every option.
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slimkit.compress import METHODS, MethodConfig, data, zoo
from slimkit.runtime.errors import ConfigError, UnsupportedModelError

FAST = {"sortednet": {"epochs": 0}, "n2n": {"iterations": 1, "rollouts": 1, "epochs": 0},
        "snnk": {"mode": "closed_form"}, "sparse_rnn": {"epochs": 0}, "boost": {"stages": 1}}


class Pair(nn.Module):
    """Returns (logits, logits): a model whose output is not one tensor."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        y = self.inner(x)
        return y, y


@pytest.fixture(scope="module")
def setups():
    """Per method: (model, train loader, val loader, a wrong-shape input)."""
    wine = data.sklearn_dataset("wine")
    torch.manual_seed(0)
    mlp = zoo.build("mlp", in_features=13, num_classes=3, hidden=[16])
    g = torch.Generator().manual_seed(0)
    seq = DataLoader(TensorDataset(torch.randn(32, 10, 4, generator=g), torch.randint(0, 3, (32,), generator=g)),
                     batch_size=8)
    gru = zoo.build("gru", in_features=4, hidden_size=8, num_classes=3)
    return {name: ((gru, seq, seq, torch.randn(2, 10, 7)) if name == "sparse_rnn"
                   else (mlp, wine.train, wine.val, torch.randn(2, 7)))
            for name in METHODS}


def _message(method: str, fn, **kw) -> tuple[type, str]:
    """The refusal's class and message, with what legitimately differs by method masked: the method's name,
    the example's shape and the framework's own error text."""
    with pytest.raises((ConfigError, UnsupportedModelError)) as info:
        fn(kw.pop("model"), **kw)  # positional: n2n calls it the teacher
    message = str(info.value).replace(method, "<method>")
    message = re.sub(r"shape \([^)]*\)", "shape <shape>", message)
    return type(info.value), re.sub(r"\(\w+Error: .*\); ", "(<error>); ", message)


def _empty_like(loader: DataLoader) -> DataLoader:
    x, y = next(iter(loader))
    return DataLoader(TensorDataset(x[:0], y[:0]), batch_size=4)


CASES = {
    "model is not a module": lambda m, tr, va, bad: dict(model="resnet", train=tr, val=va),
    "train is not a loader": lambda m, tr, va, bad: dict(model=m, train=[(1, 2)], val=va),
    "train is empty": lambda m, tr, va, bad: dict(model=m, train=_empty_like(tr), val=va),
    "val is not a loader": lambda m, tr, va, bad: dict(model=m, train=tr, val="val.csv"),
    "val is empty": lambda m, tr, va, bad: dict(model=m, train=tr, val=_empty_like(va)),
    "example is not a tensor": lambda m, tr, va, bad: dict(model=m, train=tr, val=va, example_input=[1.0, 2.0]),
    "model fails on the example": lambda m, tr, va, bad: dict(model=m, train=tr, val=va, example_input=bad),
    "model returns a tuple": lambda m, tr, va, bad: dict(model=Pair(m), train=tr, val=va),
    "output selects nothing": lambda m, tr, va, bad: dict(model=Pair(m), train=tr, val=va, output="logits"),
    "output is not a selector": lambda m, tr, va, bad: dict(model=m, train=tr, val=va, output=1.5),
    "unknown option": lambda m, tr, va, bad: dict(model=m, train=tr, val=va, learning_rate=0.1),
    "bad seed": lambda m, tr, va, bad: dict(model=m, train=tr, val=va, seed=-1),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_method_refuses_bad_input_the_same_way(setups, case):
    seen = {}
    for name, (fn, _cfg) in METHODS.items():
        kw = CASES[case](*setups[name])
        if case == "unknown option":
            kw = {**kw, **FAST[name]}
        else:
            kw = {**FAST[name], **kw}
        kind, message = _message(name, fn, progress=False, **kw)
        seen[name] = (kind, message.replace(type(setups[name][0]).__name__, "<model>"))
    kinds = {k for k, _ in seen.values()}
    assert len(kinds) == 1, seen
    if case != "unknown option":  # the valid-option lists differ by method; the wording does not
        assert len({m for _, m in seen.values()}) == 1, seen
    else:
        for _, m in seen.values():
            assert m.startswith("<method> got unknown options ['learning_rate']; valid ones: ["), m


def test_the_refusals_name_what_was_received_and_what_to_do(setups):
    m, tr, va, bad = setups["sortednet"]
    fn = METHODS["sortednet"][0]
    cases = [
        (dict(model="resnet", train=tr), "model must be a torch.nn.Module, got str"),
        (dict(model=m, train=_empty_like(tr)), "the train loader is empty; pass a loader over a non-empty dataset"),
        (dict(model=m, train=tr, example_input=bad), r"does not run on example_input of shape \(2, 7\)"),
        (dict(model=Pair(m), train=tr), r"Pair returns tuple of 2 \(tensors at 0, 1\); slimkit compresses one output "
                                        "tensor: pass output=0 to use that one"),
        (dict(model=Pair(m), train=tr, output="logits"), "output='logits' does not apply to what Pair returns"),
    ]
    for kw, match in cases:
        with pytest.raises((ConfigError, UnsupportedModelError), match=match):
            fn(kw.pop("model"), progress=False, epochs=0, **kw)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_takes_an_output_selector(setups, method):
    # the same model returning (logits, logits): an index, or a function, selects the tensor to compress
    m, tr, va, _bad = setups[method]
    fn = METHODS[method][0]
    x = next(iter(va))[0][:3]
    for output in (0, lambda out: out[1]):
        fam = fn(Pair(m), train=tr, val=va, progress=False, output=output, **FAST[method])
        assert fam.output is output
        for v in fam:
            assert isinstance(v.model, Pair) and isinstance(v.model(x), torch.Tensor)


def test_n2n_needs_a_validation_split(setups):
    m, tr, _va, _bad = setups["n2n"]
    with pytest.raises(ConfigError, match="scores its candidates on a validation split: pass val="):
        METHODS["n2n"][0](m, train=tr, val=None, progress=False)


def test_a_method_that_does_not_apply_refuses_before_running_the_model(setups):
    # the MLP cannot even run on the sequence input: the refusal must be about RNNs, not the shapes
    m, _tr, _va, _bad = setups["sortednet"]
    _gru, seq, _, _ = setups["sparse_rnn"]
    with pytest.raises(UnsupportedModelError, match="has no nn.RNN, nn.GRU or nn.LSTM"):
        METHODS["sparse_rnn"][0](m, train=seq, progress=False)


# -- configs ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", sorted(METHODS))
def test_config_round_trips_through_json(method):
    cls = METHODS[method][1]
    assert issubclass(cls, MethodConfig) and cls.METHOD == method
    default = cls()
    assert cls.from_dict(json.loads(json.dumps(default.to_dict()))) == default
    changed = {
        "sortednet": dict(widths=[0.5, 1.0], depths=[0.5, 1.0], ignore=["head"], epochs=2),
        "n2n": dict(budget={"params": 0.3}, ratios=[0.5, 1.0], rerank=2),
        "snnk": dict(features=[8, 32], mode="closed_form", kind="cos", targets=["head"]),
        "sparse_rnn": dict(sparsities=[0.3, 0.6], structured=True, weights=["hh"]),
        "boost": dict(stages=4, stage_counts=[2, 4], activation="relu"),
    }[method]
    cfg = cls.from_options(**changed)
    again = cls.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.to_dict() == cfg.to_dict() and again.version == cls.VERSION


@pytest.mark.parametrize("method", sorted(METHODS))
def test_config_refuses_unknown_keys_and_newer_versions(method):
    cls = METHODS[method][1]
    recipe = {**cls().to_dict(), "learning_rate": 1.0}
    with pytest.raises(ConfigError, match=r"unknown recipe keys \['learning_rate'\]; valid ones: \[.*'seed'"):
        cls.from_dict(recipe)
    with pytest.raises(ConfigError, match="written by a newer slimkit"):
        cls.from_dict({**cls().to_dict(), "version": cls.VERSION + 1})
    with pytest.raises(ConfigError, match="needs a mapping"):
        cls.from_dict([("seed", 1)])


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_option_is_documented(method):
    cls = METHODS[method][1]
    options = cls.options()
    assert {o.name for o in options} == {f.name for f in dataclasses.fields(cls)} - {"version"}
    undocumented = [o.name for o in options if not o.help]
    assert not undocumented, f"{cls.__name__} documents no help for {undocumented} (Attributes: section)"


@pytest.mark.parametrize("method", sorted(METHODS))
def test_entry_takes_a_whole_config_or_options_but_not_both(setups, method):
    fn, cls = METHODS[method]
    m, tr, va, _ = setups[method]
    with pytest.raises(ConfigError, match="config must be a"):
        fn(m, train=tr, val=va, config={"seed": 1}, progress=False)
    with pytest.raises(ConfigError, match="got config= and also the options"):
        fn(m, train=tr, val=va, config=cls(), seed=3, progress=False)
